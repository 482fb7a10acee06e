"""The sample CDK app: ``make synth`` or ``cdk deploy`` (see README.md)."""

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks
from soci_cdk.sample_stack import SociSampleStack

app = App()
SociSampleStack(app, "SociFargateSample")
# Every AWS Solutions finding fails the synth unless a construct acknowledged it with a reason.
Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
