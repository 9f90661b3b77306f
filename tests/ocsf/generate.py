"""Writes the JSON Schemas of the OCSF classes audit-ingest exports, for the
OCSF version it writes, into tests/ocsf/<version>/ (what the export test
validates against).

The schemas come from the `ocsf-json-schema` package (PyPI, MIT), which
bundles the schema.ocsf.io export of each OCSF release (Apache-2.0) and
turns a class into a JSON Schema (draft 2020-12) with every object it uses
embedded. To regenerate:

    python3 -m venv /tmp/ocsf && /tmp/ocsf/bin/pip install ocsf-json-schema==1.2.0
    /tmp/ocsf/bin/python tests/ocsf/generate.py
"""

import json
import pathlib

from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

VERSION = "1.1.0"
CLASSES = [
    "base_event",
    "authentication",
    "account_change",
    "group_management",
    "email_activity",
    "api_activity",
    "file_hosting",
]

schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=VERSION))
out = pathlib.Path(__file__).parent / VERSION
out.mkdir(exist_ok=True)
for name in CLASSES:
    generated = schema.get_class_schema(class_name=name, profiles=[])
    (out / f"{name}.json").write_text(json.dumps(generated, indent=1, sort_keys=True) + "\n")
    print(f"{out / name}.json")
