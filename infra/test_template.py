"""Checks on infra/template.yaml that cfn-lint does not make: the CDN keeps the derivatives bucket
private and HTTPS-only, and CloudFront runs the same negotiation code the node tests run.

    .venv/bin/python -m unittest discover -s infra -p 'test_*.py'     (make test / make unit)

The template is read with cfn-lint's own loader (it understands !Ref, !If, !Join ...).
"""

import re
import unittest
from pathlib import Path

from cfnlint.decode import decode

INFRA = Path(__file__).resolve().parent
CDN_CONDITION = "DeployCdn"


def load():
    template, errors = decode(str(INFRA / "template.yaml"))
    assert not errors, errors
    return template


def refs(value):
    """Every Ref / GetAtt target inside `value`."""
    found = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref":
                found.add(v)
            elif k == "Fn::GetAtt":
                found.add(v[0] if isinstance(v, list) else v.split(".")[0])
            else:
                found |= refs(v)
    elif isinstance(value, list):
        for v in value:
            found |= refs(v)
    return found


def flat(statements):
    """A policy document's statements, each Fn::If's branches that are statements (not NoValue)."""
    out = []
    for st in statements:
        if isinstance(st, dict) and "Fn::If" in st:
            out += flat([b for b in st["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"}])
        else:
            out.append(st)
    return out


def refs_statements(policy):
    """IAM statements inside a SAM policy entry (plain, or under Fn::If)."""
    if isinstance(policy, dict) and "Fn::If" in policy:
        return [st for branch in policy["Fn::If"][1:] for st in refs_statements(branch)]
    if isinstance(policy, dict) and "Statement" in policy:
        return policy["Statement"]
    return []


def served_extensions():
    """The extensions of the files imgpipe writes, from OutputFormat::extension in preset.rs."""
    preset_rs = (INFRA.parent / "functions/core/src/preset.rs").read_text(encoding="utf-8")
    body = preset_rs[preset_rs.index("pub fn extension(self)"):]
    body = body[:body.index("\n    }\n")]
    found = re.findall(r'OutputFormat::\w+ => "(\w+)"', body)
    assert len(found) == 4, found
    return [f".{ext}" for ext in found]


class Cdn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t = load()
        cls.r = cls.t["Resources"]
        cls.dist = cls.r["Distribution"]["Properties"]["DistributionConfig"]

    def behaviors(self):
        return [self.dist["DefaultCacheBehavior"], *self.dist["CacheBehaviors"]]

    def test_cdn_resources_are_left_out_in_local_mode(self):
        conditions = self.t["Conditions"]
        self.assertIn("DeployFunction", str(conditions[CDN_CONDITION]))
        self.assertIn("LocalMode", str(conditions["DeployFunction"]))
        for name, resource in self.r.items():
            if resource["Type"].startswith("AWS::CloudFront::"):
                self.assertEqual(resource.get("Condition"), CDN_CONDITION, name)
        # The bucket policy stays (it denies plain HTTP); CloudFront's Allow goes with the CDN.
        for st in self.r["DerivativesBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]:
            if "Fn::If" in st:
                self.assertEqual(st["Fn::If"][0], CDN_CONDITION)
                self.assertEqual(st["Fn::If"][2], {"Ref": "AWS::NoValue"})
            else:
                self.assertEqual(st["Effect"], "Deny", st)

    def test_the_derivatives_bucket_stays_private(self):
        bucket = self.r["DerivativesBucket"]["Properties"]
        self.assertEqual(
            bucket["PublicAccessBlockConfiguration"],
            {"BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        )
        self.assertNotIn("AccessControl", bucket)
        self.assertNotIn("WebsiteConfiguration", bucket)
        policies = [r for r in self.r.values() if r["Type"] == "AWS::S3::BucketPolicy"
                    and refs(r["Properties"]["Bucket"]) == {"DerivativesBucket"}]
        self.assertEqual(len(policies), 1)
        for statement in flat(policies[0]["Properties"]["PolicyDocument"]["Statement"]):
            if statement["Effect"] != "Allow":
                continue
            # Only CloudFront, only reads, only for this distribution.
            self.assertEqual(statement["Principal"], {"Service": "cloudfront.amazonaws.com"}, statement)
            self.assertEqual(statement["Action"], "s3:GetObject", statement)
            source_arn = statement["Condition"]["StringEquals"]["AWS:SourceArn"]
            self.assertIn("Distribution", refs(source_arn))
            self.assertIn(":distribution/", str(source_arn))

    def test_the_cdn_serves_images_only(self):
        """metadata.json (location, capture time), summaries and import outcomes are never on the CDN:
        no behaviour names a document, and CloudFront may read only the files imgpipe writes, under
        OutputPrefix, whatever a behaviour routes (the function's 404 is the second line)."""
        for behavior in self.dist["CacheBehaviors"]:
            self.assertFalse(behavior["PathPattern"].lower().endswith(".json"), behavior)
        (policy,) = [r for r in self.r.values() if r["Type"] == "AWS::S3::BucketPolicy"
                     and refs(r["Properties"]["Bucket"]) == {"DerivativesBucket"}]
        allows = [st for st in flat(policy["Properties"]["PolicyDocument"]["Statement"]) if st["Effect"] == "Allow"]
        self.assertTrue(allows)
        readable = []
        for statement in allows:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for resource in resources:
                parts = resource["Fn::Join"][1]
                self.assertEqual(refs(parts), {"DerivativesBucket", "OutputPrefix"}, resource)
                self.assertEqual(parts[-2], {"Ref": "OutputPrefix"}, resource)
                readable.append(parts[-1])
        self.assertEqual(sorted(readable), sorted(f"*{ext}" for ext in served_extensions()))

    def origin(self, origin_id):
        (origin,) = [o for o in self.dist["Origins"] if o["Id"] == origin_id]
        return origin

    def test_the_origin_is_signed_with_origin_access_control(self):
        origin = self.origin("derivatives")
        self.assertEqual(refs(origin["DomainName"]), {"DerivativesBucket"})
        self.assertEqual(refs(origin["OriginAccessControlId"]), {"DerivativesOriginAccessControl"})
        self.assertEqual(origin["S3OriginConfig"]["OriginAccessIdentity"], "")
        oac = self.r["DerivativesOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
        self.assertEqual((oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]),
                         ("s3", "always", "sigv4"))

    def test_misses_fail_over_from_the_bucket_to_the_render_function(self):
        """Every behaviour reads the origin group: the bucket first, its 403 (a missing key, since
        CloudFront may not list) or 404 to the render function's URL."""
        self.assertEqual({o["Id"] for o in self.dist["Origins"]}, {"derivatives", "render"})
        groups = self.dist["OriginGroups"]
        self.assertEqual(groups["Quantity"], 1)
        (group,) = groups["Items"]
        members = [m["OriginId"] for m in group["Members"]["Items"]]
        self.assertEqual(members, ["derivatives", "render"], "the bucket first")
        self.assertEqual(group["Members"]["Quantity"], 2)
        codes = group["FailoverCriteria"]["StatusCodes"]
        self.assertEqual((codes["Quantity"], sorted(codes["Items"])), (2, [403, 404]))
        for behavior in self.behaviors():
            self.assertEqual(behavior["TargetOriginId"], group["Id"], behavior.get("PathPattern"))
            # Origin groups fail over only for GET, HEAD and OPTIONS.
            self.assertEqual(behavior["AllowedMethods"], ["GET", "HEAD"])

    def test_the_render_function_is_reachable_only_through_this_distribution(self):
        render = self.origin("render")
        self.assertEqual(refs(render["DomainName"]), {"RenderFunctionUrl"})
        self.assertEqual(render["CustomOriginConfig"]["OriginProtocolPolicy"], "https-only")
        self.assertEqual(refs(render["OriginAccessControlId"]), {"RenderOriginAccessControl"})
        oac = self.r["RenderOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
        self.assertEqual((oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]),
                         ("lambda", "always", "sigv4"))
        url = self.r["RenderFunctionUrl"]["Properties"]
        self.assertEqual(url["AuthType"], "AWS_IAM", "a NONE function URL would be a public, unmetered renderer")
        self.assertEqual(refs(url["TargetFunctionArn"]), {"RenderFunction"})
        self.assertNotIn("FunctionUrlConfig", self.r["RenderFunction"]["Properties"], "one URL, the one above")
        permissions = {name: r["Properties"] for name, r in self.r.items()
                       if r["Type"] == "AWS::Lambda::Permission" and refs(r["Properties"]["FunctionName"]) == {"RenderFunction"}}
        self.assertEqual({p["Action"] for p in permissions.values()}, {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"})
        for name, permission in permissions.items():
            self.assertEqual(permission["Principal"], "cloudfront.amazonaws.com", name)
            self.assertEqual(refs(permission["SourceArn"]), {"AWS::Partition", "AWS::AccountId", "Distribution"}, name)
            self.assertIn(":distribution/", str(permission["SourceArn"]), name)
            self.assertEqual(self.r[name].get("Condition"), CDN_CONDITION, name)
            if permission["Action"] == "lambda:InvokeFunctionUrl":
                self.assertEqual(permission["FunctionUrlAuthType"], "AWS_IAM", name)
        for name in ("RenderFunction", "RenderFunctionUrl", "RenderOriginAccessControl"):
            self.assertEqual(self.r[name].get("Condition"), CDN_CONDITION, name)

    def test_renders_are_capped_and_watched(self):
        function = self.r["RenderFunction"]["Properties"]
        self.assertEqual(function["ReservedConcurrentExecutions"], {"Ref": "RenderConcurrency"})
        self.assertGreaterEqual(self.t["Parameters"]["RenderConcurrency"]["MinValue"], 1, "0 would turn renders off silently")
        watched = {}
        for name, r in self.r.items():
            if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["Namespace"] == "AWS/Lambda":
                dims = r["Properties"]["Dimensions"]
                if any(refs(d["Value"]) == {"RenderFunction"} for d in dims):
                    watched[r["Properties"]["MetricName"]] = name
        self.assertEqual(set(watched), {"Errors", "Duration", "Throttles"}, watched)
        variables = function["Environment"]["Variables"]
        self.assertEqual(refs(variables["IMGPIPE_OUTPUT_BUCKET"]), {"DerivativesBucket"})
        self.assertNotIn("IMGPIPE_VARIANT_KEYS", variables, "keys come from SSM, never the environment")

    def test_https_only_http2_and_http3(self):
        self.assertEqual(self.dist["HttpVersion"], "http2and3")
        for behavior in self.behaviors():
            self.assertEqual(behavior["ViewerProtocolPolicy"], "redirect-to-https", behavior.get("PathPattern"))
            self.assertEqual(behavior["AllowedMethods"], ["GET", "HEAD"])

    def test_group_paths_are_negotiated_and_keyed_on_accept_only(self):
        default = self.dist["DefaultCacheBehavior"]
        (association,) = default["FunctionAssociations"]
        self.assertEqual(association["EventType"], "viewer-request")
        self.assertEqual(refs(association["FunctionARN"]), {"EdgeNegotiationFunction"})
        self.assertFalse(default["Compress"])
        key = self.r[refs(default["CachePolicyId"]).pop()]["Properties"]["CachePolicyConfig"][
            "ParametersInCacheKeyAndForwardedToOrigin"]
        self.assertEqual(key["HeadersConfig"], {"HeaderBehavior": "whitelist", "Headers": ["Accept"]})
        self.assertEqual(key["CookiesConfig"]["CookieBehavior"], "none")
        self.assertEqual(key["QueryStringsConfig"]["QueryStringBehavior"], "none")
        self.assertFalse(key["EnableAcceptEncodingGzip"] or key["EnableAcceptEncodingBrotli"])
        headers = self.r[refs(default["ResponseHeadersPolicyId"]).pop()]["Properties"]["ResponseHeadersPolicyConfig"]
        self.assertIn({"Header": "Vary", "Value": "Accept", "Override": True}, headers["CustomHeadersConfig"]["Items"])
        self.assertTrue(headers["SecurityHeadersConfig"]["ContentTypeOptions"]["Override"])
        names = {h["Header"].lower() for h in headers["CustomHeadersConfig"]["Items"]}
        self.assertNotIn("cache-control", names, "Cache-Control comes from the object")

    def test_files_are_cached_once_and_images_not_recompressed(self):
        patterns = {b["PathPattern"]: b for b in self.dist["CacheBehaviors"]}
        self.assertEqual(set(patterns), {f"*{ext}" for ext in served_extensions()})
        for pattern, behavior in patterns.items():
            self.assertFalse(behavior["Compress"], pattern)
            self.assertNotIn("FunctionAssociations", behavior)
            key = self.r[refs(behavior["CachePolicyId"]).pop()]["Properties"]["CachePolicyConfig"][
                "ParametersInCacheKeyAndForwardedToOrigin"]
            self.assertEqual(key["HeadersConfig"], {"HeaderBehavior": "none"}, pattern)
            headers = self.r[refs(behavior["ResponseHeadersPolicyId"]).pop()]["Properties"]["ResponseHeadersPolicyConfig"]
            self.assertTrue(headers["SecurityHeadersConfig"]["ContentTypeOptions"]["Override"])
            self.assertNotIn("CustomHeadersConfig", headers, f"{pattern}: no Vary on files")

    def test_cloudfront_runs_the_tested_file(self):
        function = self.r["EdgeNegotiationFunction"]["Properties"]
        self.assertEqual(function["FunctionConfig"]["Runtime"], "cloudfront-js-2.0")
        code = (INFRA / "cloudfront" / "negotiate.js").read_text()
        self.assertEqual(function["FunctionCode"], code,
                         "template.yaml embeds an old negotiate.js: run python3 infra/cloudfront/embed.py")
        self.assertLess(len(code.encode()), 10 * 1024, "CloudFront Functions are limited to 10 KB")

    def test_handlers_get_the_distribution_url_unless_one_is_given(self):
        for name in ("DeriveFunction", "ApiFunction"):
            env = self.r[name]["Properties"]["Environment"]["Variables"]["IMGPIPE_CDN_BASE_URL"]
            self.assertIn("CdnBaseUrl", refs(env), name)
            self.assertIn("Distribution", refs(env), name)
            self.assertIn("CdnDomainName", refs(env), name)
        self.assertIn("CdnBaseUrl", self.t["Outputs"])
        self.assertIn("CdnDistributionId", self.t["Outputs"])

    def test_the_handler_may_invalidate_this_distribution_only(self):
        derive = self.r["DeriveFunction"]["Properties"]
        env = derive["Environment"]["Variables"]["IMGPIPE_CDN_DISTRIBUTION_ID"]
        self.assertEqual(refs(env), {"Distribution", "AWS::NoValue"})
        statements = [st for p in derive["Policies"] for st in refs_statements(p)]
        invalidations = [st for st in statements if st.get("Action") == ["cloudfront:CreateInvalidation"]]
        self.assertEqual(len(invalidations), 1, statements)
        self.assertIn("Distribution", refs(invalidations[0]["Resource"]))
        self.assertIn(":distribution/", str(invalidations[0]["Resource"]))

    def test_removals_reach_the_jobs_queue(self):
        configs = self.r["IngestBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
        self.assertEqual({c["Event"] for c in configs},
                         {"s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"})
        self.assertTrue(all(refs(c["Queue"]) == {"JobsQueue"} for c in configs))

    def test_every_alarm_notifies_the_alarm_topic_when_given(self):
        alarms = {n: r for n, r in self.r.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
        self.assertGreaterEqual(set(alarms), {"DlqDepthAlarm", "GpuDlqDepthAlarm", "EventAgeAlarm", "JobsQueueAgeAlarm"})
        for name, alarm in alarms.items():
            self.assertEqual(refs(alarm["Properties"].get("AlarmActions")), {"AlarmTopicArn", "AWS::NoValue"}, name)

    def test_event_age_alarm_watches_the_handlers_metric(self):
        alarm = self.r["EventAgeAlarm"]["Properties"]
        # What functions/cloud/src/metrics.rs writes: namespace, metric, unit, Stack dimension.
        self.assertEqual((alarm["Namespace"], alarm["MetricName"], alarm["Unit"]), ("imgpipe", "EventAge", "Seconds"))
        self.assertEqual([d["Name"] for d in alarm["Dimensions"]], ["Stack"])
        self.assertEqual(refs(alarm["Dimensions"][0]["Value"]), {"AWS::StackName"})
        env = self.r["DeriveFunction"]["Properties"]["Environment"]["Variables"]
        self.assertEqual(refs(env["IMGPIPE_STACK_NAME"]), {"AWS::StackName"})
        self.assertEqual(refs(alarm["Threshold"]), {"EventAgeAlarmSeconds"})
        metrics_rs = (INFRA.parent / "functions/cloud/src/metrics.rs").read_text(encoding="utf-8")
        self.assertIn('pub const NAMESPACE: &str = "imgpipe";', metrics_rs)
        self.assertIn('("EventAge", "Seconds", age)', metrics_rs)

    def test_imports_are_written_under_the_notification_prefix_only(self):
        env = self.r["DeriveFunction"]["Properties"]["Environment"]["Variables"]
        self.assertEqual(refs(env["IMGPIPE_IMPORT_ALLOW_HOSTS"]), {"ImportAllowHosts"})
        self.assertEqual(refs(env["IMGPIPE_IMPORT_PREFIX"]), {"IngestPrefix"})
        self.assertIn("imports/", str(env["IMGPIPE_IMPORT_PREFIX"]))
        self.assertEqual(self.t["Parameters"]["ImportAllowHosts"]["Default"], "", "imports are off by default")
        worker, errors = decode(str(INFRA / "gpu-worker.yaml"))
        assert not errors, errors
        statements = worker["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        ingest_puts = [st for st in statements if isinstance(st, dict) and st.get("Action") == ["s3:PutObject"]]
        self.assertEqual(len(ingest_puts), 1, statements)
        self.assertIn("${IngestPrefix}imports/*", str(ingest_puts[0]["Resource"]))

    def test_the_gpu_worker_can_tell_a_missing_key_and_delete_old_outputs(self):
        worker, errors = decode(str(INFRA / "gpu-worker.yaml"))
        assert not errors, errors
        statements = worker["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        actions = {a for st in statements if isinstance(st, dict) for a in st.get("Action", [])}
        self.assertLessEqual({"s3:ListBucket", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"}, actions)
        lists = [st for st in statements if isinstance(st, dict) and st.get("Action") == ["s3:ListBucket"]]
        resources = [r["Fn::Sub"] for r in lists[0]["Resource"]]
        self.assertTrue(any(r.endswith(":::${DerivativesBucketName}") for r in resources), lists)

    def test_tombstones_expire_by_their_tag(self):
        rules = self.r["DerivativesBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        tombstones = [r for r in rules if r.get("TagFilters")]
        self.assertEqual(len(tombstones), 1, rules)
        tag = tombstones[0]["TagFilters"][0]
        deletion_rs = (INFRA.parent / "functions/cloud/src/deletion.rs").read_text(encoding="utf-8")
        self.assertIn(f'TOMBSTONE_TAGGING: &str = "{tag["Key"]}={tag["Value"]}";', deletion_rs)
        self.assertEqual(refs(tombstones[0]["ExpirationInDays"]), {"TombstoneDays"})
        derive = self.r["DeriveFunction"]["Properties"]
        statements = [st for p in derive["Policies"] for st in refs_statements(p)]
        self.assertTrue(any("s3:PutObjectTagging" in st.get("Action", []) and "DerivativesBucket" in str(st["Resource"])
                            for st in statements), statements)



class TrustBoundaries(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t = load()
        cls.r = cls.t["Resources"]

    def test_the_jobs_queue_takes_the_ingest_buckets_notifications_only(self):
        (statement,) = self.r["JobsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
        self.assertNotIn("ArnLike", statement["Condition"])
        source_arn = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        self.assertNotIn("*", str(source_arn))
        name = self.r["IngestBucket"]["Properties"]["BucketName"]
        # The policy's ARN ends with exactly the expression the bucket is named by.
        parts = source_arn["Fn::Join"][1]
        self.assertEqual(parts[-2], ":s3:::imgpipe-ingest-")
        self.assertEqual(parts[-1], name["Fn::Join"][1][-1])
        self.assertEqual(name["Fn::Join"][1][0], "imgpipe-ingest-")

    def test_a_long_fan_out_may_continue_through_the_jobs_queue(self):
        derive = self.r["DeriveFunction"]["Properties"]
        env = derive["Environment"]["Variables"]
        self.assertEqual(refs(env["IMGPIPE_QUEUE_URL"]), {"JobsQueue"})
        sends = [p["SQSSendMessagePolicy"]["QueueName"] for p in derive["Policies"]
                 if isinstance(p, dict) and "SQSSendMessagePolicy" in p]
        self.assertIn({"Fn::GetAtt": ["JobsQueue", "QueueName"]}, sends)

    def test_both_workers_know_their_source_buckets(self):
        env = self.r["DeriveFunction"]["Properties"]["Environment"]["Variables"]
        self.assertEqual(refs(env["IMGPIPE_INGEST_BUCKET"]), {"IngestBucket"})
        self.assertEqual(refs(env["IMGPIPE_BACKFILL_BUCKETS"]), {"BackfillBuckets"})
        self.assertEqual(self.t["Parameters"]["BackfillBuckets"]["Default"], "")
        worker, errors = decode(str(INFRA / "gpu-worker.yaml"))
        assert not errors, errors
        (container,) = worker["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
        names = {e["Name"]: e["Value"] for e in container["Environment"] if "Name" in e}
        self.assertEqual(refs(names["IMGPIPE_INGEST_BUCKET"]), {"IngestBucketName"})
        self.assertEqual(refs(names["IMGPIPE_BACKFILL_BUCKETS"]), {"BackfillBuckets"})


class Uploads(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t = load()
        cls.r = cls.t["Resources"]

    def test_anonymous_uploads_are_an_explicit_choice(self):
        self.assertEqual(self.t["Parameters"]["AllowAnonymousUploads"]["Default"], "false")
        rule = self.t["Rules"]["UploadApiNeedsAuthOrAnOptIn"]
        condition = str(rule["RuleCondition"])
        self.assertIn("JwtIssuer", condition)
        self.assertIn("LocalMode", condition)
        (assertion,) = rule["Assertions"]
        self.assertEqual(assertion["Assert"], {"Fn::Equals": [{"Ref": "AllowAnonymousUploads"}, "true"]})

    def test_unfinished_and_failed_sources_expire_by_the_handlers_tag(self):
        rules = self.r["IngestBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        status_rs = (INFRA.parent / "functions/cloud/src/source_status.rs").read_text(encoding="utf-8")
        tag = re.search(r'pub const TAG: &str = "([^"]+)";', status_rs).group(1)
        expired = set()
        for rule in rules:
            for f in rule.get("TagFilters", []):
                self.assertEqual(f["Key"], tag, rule)
                self.assertEqual(refs(rule["ExpirationInDays"]), {"UnfinishedSourceDays"}, rule)
                expired.add(f["Value"])
        for name in ("PENDING", "FAILED"):
            value = re.search(rf'pub const {name}: &str = "([^"]+)";', status_rs).group(1)
            self.assertIn(value, expired)
        done = re.search(r'pub const DONE: &str = "([^"]+)";', status_rs).group(1)
        self.assertNotIn(done, expired, "a processed original must never expire")
        self.assertTrue(any(r.get("AbortIncompleteMultipartUpload") for r in rules), rules)
        self.assertEqual(self.t["Parameters"]["UnfinishedSourceDays"]["Default"], 14)


def s3_statements(policies):
    """Every Allow statement naming an s3 action in a function's or role's policies."""
    out = []
    for policy in policies:
        if isinstance(policy, dict) and "PolicyDocument" in policy:
            statements = policy["PolicyDocument"]["Statement"]
        else:
            statements = refs_statements(policy)
        for st in flat(statements):
            actions = st.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            if st.get("Effect") == "Allow" and any(a.startswith("s3:") for a in actions):
                out.append((actions, st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]))
    return out


class Iam(unittest.TestCase):
    """Exact S3 actions on exact prefixes; HTTPS only on every bucket."""

    @classmethod
    def setUpClass(cls):
        cls.t = load()
        cls.r = cls.t["Resources"]
        worker, errors = decode(str(INFRA / "gpu-worker.yaml"))
        assert not errors, errors
        cls.worker = worker["Resources"]

    def grants(self):
        """(owner, actions, resources) of every S3 Allow, in both templates."""
        found = []
        for name, resource in self.r.items():
            if resource["Type"] == "AWS::Serverless::Function":
                for actions, resources in s3_statements(resource["Properties"].get("Policies", [])):
                    found.append((name, actions, resources))
        for actions, resources in s3_statements(self.worker["TaskRole"]["Properties"]["Policies"]):
            found.append(("gpu-worker", actions, resources))
        return found

    def test_no_sam_s3_template_and_no_wildcard_or_admin_action(self):
        for name, resource in self.r.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            for policy in resource["Properties"].get("Policies", []):
                if isinstance(policy, dict):
                    for template in ("S3CrudPolicy", "S3FullAccessPolicy", "S3ReadPolicy", "S3WritePolicy"):
                        self.assertNotIn(template, policy, name)
        grants = self.grants()
        self.assertGreaterEqual(len(grants), 6, grants)
        for owner, actions, _ in grants:
            for action in actions:
                self.assertNotIn("*", action, owner)
                self.assertFalse(action.startswith(("s3:PutBucket", "s3:PutLifecycle", "s3:DeleteBucket")), (owner, action))
                self.assertNotIn(action, ("s3:PutObjectAcl", "s3:PutObjectVersionAcl"), owner)

    def test_object_grants_are_scoped_to_a_prefix(self):
        for owner, actions, resources in self.grants():
            for resource in resources:
                text = resource.get("Fn::Sub") if isinstance(resource, dict) else resource
                self.assertIsInstance(text, str, (owner, resource))
                bucket_only = text.endswith("}") and "/" not in text.split(":::", 1)[1]
                if bucket_only:
                    self.assertEqual(actions, ["s3:ListBucket"], (owner, text))
                else:
                    self.assertRegex(text, r"\$\{(IngestPrefix|OutputPrefix)\}", (owner, text))

    def test_the_api_may_put_under_the_upload_prefix_only(self):
        api = self.r["ApiFunction"]["Properties"]
        prefix = api["Environment"]["Variables"]["IMGPIPE_UPLOAD_PREFIX"]["Fn::Sub"]
        self.assertEqual(prefix, "${IngestPrefix}uploads/")
        puts = [(a, r) for owner, a, r in self.grants() if owner == "ApiFunction" and "s3:PutObject" in a]
        self.assertEqual(len(puts), 1, puts)
        actions, (resource,) = puts[0]
        self.assertEqual(sorted(actions), ["s3:PutObject", "s3:PutObjectTagging"])
        self.assertTrue(resource["Fn::Sub"].endswith(f"${{IngestBucket}}/{prefix}*"), resource)
        # Reads: the metadata documents, and the uploads themselves (PUT /v1/images/{id}/focus
        # copies an upload onto itself), nothing else of either bucket.
        reads = [r for owner, a, rs in self.grants() if owner == "ApiFunction" and "s3:GetObject" in a for r in rs]
        self.assertEqual(sorted(r["Fn::Sub"] for r in reads), [
            "arn:${AWS::Partition}:s3:::${DerivativesBucket}/${OutputPrefix}*/metadata.json",
            f"arn:${{AWS::Partition}}:s3:::${{IngestBucket}}/{prefix}*",
        ])

    def test_every_bucket_refuses_plain_http(self):
        buckets = [name for name, r in self.r.items() if r["Type"] == "AWS::S3::Bucket"]
        self.assertGreaterEqual(len(buckets), 2)
        for bucket in buckets:
            policies = [r for r in self.r.values() if r["Type"] == "AWS::S3::BucketPolicy"
                        and refs(r["Properties"]["Bucket"]) == {bucket}]
            self.assertEqual(len(policies), 1, bucket)
            self.assertNotIn("Condition", policies[0], f"{bucket}: the TLS rule must not depend on a condition")
            denies = [st for st in policies[0]["Properties"]["PolicyDocument"]["Statement"]
                      if isinstance(st, dict) and st.get("Effect") == "Deny"]
            self.assertTrue(any(st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and st["Action"] == "s3:*"
                                for st in denies), bucket)


if __name__ == "__main__":
    unittest.main()
