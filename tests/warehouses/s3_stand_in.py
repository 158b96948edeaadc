"""S3 stand-in for the files and Delta connector tests: moto's server with IAM authentication
enforced, so a request signed with an unknown key or a wrong secret is refused as S3 refuses
it (403 InvalidAccessKeyId / SignatureDoesNotMatch), and a rightly signed one is served.

Usage: s3_stand_in.py --bucket NAME [--host ADDRESS]
Creates an IAM user allowed everything on S3, its access key and the bucket, then prints one
JSON line: {"port": ..., "access_key_id": ..., "secret_access_key": ...}.
"""

import argparse
import json
import logging
import os
import threading

# The three IAM calls below are the only unsigned requests the server accepts.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "setup")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "setup")

import urllib.parse  # noqa: E402

import boto3  # noqa: E402
from moto.iam import access_control  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

# moto re-signs the request to check it from the query string as its web framework hands it
# over, with `/` in values decoded (`prefix=a/`), while SigV4 signs values URI-encoded
# (`prefix=a%2F`): any signed listing with a prefix would be refused. Encode each value the
# way SigV4 does first, as S3 does.
_create_aws_request = access_control.IAMRequestBase._create_aws_request


def _create_decoded_aws_request(self):
    path, _, query = self._path.partition("?")
    if query:
        pairs = (pair.partition("=") for pair in query.split("&"))
        self._path = path + "?" + "&".join(
            f"{urllib.parse.quote(urllib.parse.unquote(k), safe='-_.~')}={urllib.parse.quote(urllib.parse.unquote(v), safe='-_.~')}"
            for k, _, v in pairs
        )
    return _create_aws_request(self)


access_control.IAMRequestBase._create_aws_request = _create_decoded_aws_request

POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=args.host, port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    endpoint = f"http://{args.host}:{port}"
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    iam.create_user(UserName="sluice-reader")
    key = iam.create_access_key(UserName="sluice-reader")["AccessKey"]
    iam.put_user_policy(UserName="sluice-reader", PolicyName="s3", PolicyDocument=json.dumps(POLICY))
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    s3.create_bucket(Bucket=args.bucket)
    print(json.dumps({"port": port, "access_key_id": key["AccessKeyId"],
                      "secret_access_key": key["SecretAccessKey"]}), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
