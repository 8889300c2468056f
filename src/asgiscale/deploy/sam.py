"""An AWS SAM template for a Config: the app on Lambda behind an HTTP API.

`render` returns the template as a plain dict (no I/O); `sam build && sam deploy --guided`
turns it into a stack. What it holds:

* one `AWS::Serverless::Function` running the handler of `asgiscale.serverless.entry`, which
  imports the app named by the `ASGISCALE_APP` variable; the config's `lifespan` and
  `root_path` follow as `ASGISCALE_LIFESPAN` and `ASGISCALE_ROOT_PATH` when they are not the
  defaults. Nothing else of the config is passed, so no secret is ever written into the
  template (secrets belong in Secrets Manager or SSM, read by the app);
* the Python of the machine that renders it, so `sam build` packages the dependencies
  for the runtime that will import them;
* an explicit `AWS::Serverless::HttpApi` with the routes `/` and `/{proxy+}`, any method,
  payload format 2.0, and the API's URL as the `ApiUrl` output;
* memory, timeout and architecture, and the concurrency controls: reserved concurrency on
  the function, provisioned concurrency on the alias `live` (SAM publishes a version and
  points the routes at the alias, so the warm environments are the ones invoked).

    >>> template = render(Config(app="main:app"), LambdaOptions(), python="3.11")
    >>> template["Resources"]["Function"]["Properties"]["Environment"]
    {'Variables': {'ASGISCALE_APP': 'main:app'}}
"""

from __future__ import annotations

from typing import Any

from asgiscale.config import Config
from asgiscale.deploy.options import LAMBDA_PYTHONS, LambdaOptions

Object = dict[str, Any]
HANDLER = "asgiscale.serverless.entry.handler"
APP_VARIABLE = "ASGISCALE_APP"  # read by asgiscale.serverless.entry at import
ALIAS = "live"
# The most an HTTP API waits for its integration (TimeoutInMillis: 50 to 30000).
HTTP_API_TIMEOUT = 30
ROUTES = {"Root": "/", "Proxy": "/{proxy+}"}


def runtime(python: str) -> str:
    """Lambda's runtime identifier for a Python version like "3.12"."""
    if python not in LAMBDA_PYTHONS:
        raise ValueError(
            f"Python {python} is not a Lambda runtime asgiscale deploys to ({', '.join(LAMBDA_PYTHONS)}); "
            "run `asgiscale deploy lambda` with one of them, so `sam build` packages for the same Python"
        )
    return f"python{python}"


def render(config: Config, options: LambdaOptions, *, python: str, code_uri: str = ".") -> Object:
    """The template for `config.app` on the Lambda runtime of `python`; `code_uri` is the
    directory of the app and its requirements.txt, relative to the template."""
    if not config.app:
        raise ValueError("no app to deploy: give APP like 'main:app'")
    if config.factory:
        raise ValueError(
            f"the Lambda handler imports an app, not a factory: point APP at the app object, not {config.app}"
        )
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"{config.app} on AWS Lambda behind an HTTP API (asgiscale)",
        "Resources": {
            "HttpApi": {"Type": "AWS::Serverless::HttpApi"},
            "Function": {
                "Type": "AWS::Serverless::Function",
                "Properties": function(config, options, python, code_uri),
            },
        },
        "Outputs": {
            "ApiUrl": {
                "Description": "The HTTP API's URL",
                "Value": {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"},
            },
            "FunctionName": {"Description": "The Lambda function", "Value": {"Ref": "Function"}},
        },
    }


def function(config: Config, options: LambdaOptions, python: str, code_uri: str) -> Object:
    properties: Object = {
        "Description": f"{config.app} served by asgiscale",
        "CodeUri": code_uri,
        "Handler": HANDLER,
        "Runtime": runtime(python),
        "Architectures": [options.architecture],
        "MemorySize": options.memory,
        "Timeout": options.timeout,
        "Environment": {"Variables": variables(config)},
    }
    if options.reserved_concurrency is not None:
        properties["ReservedConcurrentExecutions"] = options.reserved_concurrency
    if options.provisioned_concurrency is not None:
        properties["AutoPublishAlias"] = ALIAS
        properties["ProvisionedConcurrencyConfig"] = {
            "ProvisionedConcurrentExecutions": options.provisioned_concurrency
        }
    properties["Events"] = {name: route(path, options) for name, path in ROUTES.items()}
    return properties


def variables(config: Config) -> dict[str, str]:
    """What `asgiscale.serverless.entry` reads, with the meaning `asgiscale run` gives it."""
    found = {APP_VARIABLE: config.app or ""}
    if config.lifespan != "auto":
        found["ASGISCALE_LIFESPAN"] = config.lifespan
    if config.root_path:
        found["ASGISCALE_ROOT_PATH"] = config.root_path
    return found


def route(path: str, options: LambdaOptions) -> Object:
    return {
        "Type": "HttpApi",
        "Properties": {
            "ApiId": {"Ref": "HttpApi"},
            "Path": path,
            "Method": "ANY",
            "PayloadFormatVersion": "2.0",
            "TimeoutInMillis": min(options.timeout, HTTP_API_TIMEOUT) * 1000,
        },
    }
