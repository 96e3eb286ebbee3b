"""The CDK app that deploys imgproc to AWS."""
