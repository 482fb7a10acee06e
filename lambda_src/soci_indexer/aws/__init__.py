"""Everything that knows it runs on AWS: the Lambda entry point (``handler``), the
deploy-time custom resource behind ``SociImage`` (``custom_resource``), ECR
``events``, ECR registry hosts and credentials (``ecr``), the handler's
``config``, ``telemetry`` (JSON logs and EMF metrics), ``sqs`` (short delays
before a failed record's retry) and ECS ``pull_times``.
May import ``pipeline``, ``verify``, ``oci`` and ``engine``; boto3 only here.
"""
