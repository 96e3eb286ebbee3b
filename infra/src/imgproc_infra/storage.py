"""The bucket and the tables: where images and their records live."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from imgproc_shared.resources import TABLES, ResourceNames, Table, TableSpec

# Abandoned multipart uploads are billed until aborted.
ABORT_MULTIPART_AFTER = Duration.days(1)


def _attribute(name: str, type_: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType(_TYPES[type_]))


_TYPES = {"S": "STRING", "N": "NUMBER", "B": "BINARY"}


class Storage(Construct):
    """S3 for originals (`incoming/`) and thumbnails (`thumbnails/`); DynamoDB for records."""

    def __init__(self, scope: Construct, construct_id: str, *, names: ResourceNames) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=names.bucket,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-multipart-uploads",
                    abort_incomplete_multipart_upload_after=ABORT_MULTIPART_AFTER,
                )
            ],
            # Browsers upload straight to S3 with presigned PUT/POST URLs from the status API.
            cors=[
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.PUT, s3.HttpMethods.POST, s3.HttpMethods.GET],
                    allowed_origins=["*"],
                    allowed_headers=["*"],
                    max_age=3600,
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.tables: dict[Table, dynamodb.Table] = {
            spec.table: self._table(spec, names) for spec in TABLES
        }

    def _table(self, spec: TableSpec, names: ResourceNames) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            f"{spec.table.value}Table",
            table_name=names.table(spec.table),
            partition_key=_attribute(spec.hash_key.name, spec.hash_key.type),
            sort_key=(
                _attribute(spec.range_key.name, spec.range_key.type) if spec.range_key else None
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index in spec.indexes:
            table.add_global_secondary_index(
                index_name=index.name,
                partition_key=_attribute(index.hash_key.name, index.hash_key.type),
                sort_key=(
                    _attribute(index.range_key.name, index.range_key.type)
                    if index.range_key
                    else None
                ),
                projection_type=dynamodb.ProjectionType.ALL,
            )
        return table
