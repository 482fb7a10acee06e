"""AWS CDK constructs that make ECR images start fast on Fargate with SOCI."""
