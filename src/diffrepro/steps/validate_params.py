"""Validate a params file against the schema and print the resolved config (defaults filled) as YAML."""
import sys

import yaml

from .. import config


def configure(parser):
    parser.add_argument("--params", required=True, help="params YAML file")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")


def run(args):
    cfg = config.load(args.params)
    if not args.quiet:
        yaml.safe_dump(cfg, sys.stdout, sort_keys=False)
    print(f"{args.params}: valid (config hash {config.config_hash(cfg)})", file=sys.stderr)
