#!/usr/bin/env python3
"""Deploy infra/template.yaml to LocalStack (or any CloudFormation endpoint) and print the stack outputs as JSON.

Uses a change set with 0.5 s polling: awscli's `cloudformation deploy` waiter sleeps ~30 s between polls.
In LocalMode the function is left out by the template's condition, but LocalStack's SAM translator still
insists that a CodeUri be an S3 URI, so the local build path is swapped for a placeholder that is never read.
A template over CloudFormation's 51 200-byte TemplateBody limit goes through S3 (TemplateURL), as
`sam deploy` does on AWS: it is put in the bucket imgpipe-deploy-templates under its SHA-256.

usage: deploy.py STACK_NAME [Key=Value ...]
"""
import hashlib
import json
import os
import sys
import time

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")
TEMPLATE_BUCKET = "imgpipe-deploy-templates"
MAX_TEMPLATE_BODY = 51_200


def template_source(body: str, endpoint: str, region: str) -> dict:
    """TemplateBody when it fits, else a TemplateURL to a copy in S3 (path-style on the endpoint)."""
    data = body.encode("utf-8")
    if len(data) <= MAX_TEMPLATE_BODY:
        return {"TemplateBody": body}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
    try:
        s3.create_bucket(Bucket=TEMPLATE_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    key = f"templates/{hashlib.sha256(data).hexdigest()}.yaml"
    s3.put_object(Bucket=TEMPLATE_BUCKET, Key=key, Body=data, ContentType="application/x-yaml")
    return {"TemplateURL": f"{endpoint.rstrip('/')}/{TEMPLATE_BUCKET}/{key}"}


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    stack = sys.argv[1]
    params = dict(arg.split("=", 1) for arg in sys.argv[2:])
    params.setdefault("LocalMode", "true")
    body = open(TEMPLATE, encoding="utf-8").read()
    if params["LocalMode"] == "true":
        body = body.replace("CodeUri: ..\n", "CodeUri: s3://imgpipe-local-mode/unused.zip\n")
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name=region)
    source = template_source(body, endpoint, region)
    try:
        cfn.describe_stacks(StackName=stack)
        change_set_type = "UPDATE"
    except cfn.exceptions.ClientError:
        change_set_type = "CREATE"
    name = f"deploy-{int(time.time() * 1000)}"
    cfn.create_change_set(
        StackName=stack,
        ChangeSetName=name,
        ChangeSetType=change_set_type,
        **source,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    deadline = time.time() + 120
    while True:
        cs = cfn.describe_change_set(StackName=stack, ChangeSetName=name)
        if cs["Status"] == "CREATE_COMPLETE":
            break
        if cs["Status"] == "FAILED":
            reason = cs.get("StatusReason", "")
            if "didn't contain changes" in reason or "No updates" in reason:
                return print_outputs(cfn, stack)
            print(f"change set failed: {reason}", file=sys.stderr)
            return 1
        if time.time() > deadline:
            print("timed out creating the change set", file=sys.stderr)
            return 1
        time.sleep(0.5)
    cfn.execute_change_set(StackName=stack, ChangeSetName=name)
    while True:
        status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            return print_outputs(cfn, stack)
        if "FAILED" in status or "ROLLBACK" in status:
            events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
            for e in events:
                if "FAILED" in e.get("ResourceStatus", ""):
                    print(f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}", file=sys.stderr)
            print(f"stack {stack} ended {status}", file=sys.stderr)
            return 1
        if time.time() > deadline:
            print(f"timed out; stack {stack} is {status}", file=sys.stderr)
            return 1
        time.sleep(0.5)


def print_outputs(cfn, stack: str) -> int:
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    print(json.dumps({o["OutputKey"]: o["OutputValue"] for o in outputs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
