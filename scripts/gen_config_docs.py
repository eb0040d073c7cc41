"""Generate docs/configuration.md from schemas/config.schema.json (a test checks they agree).

    python scripts/gen_config_docs.py          # rewrite docs/configuration.md
    python scripts/gen_config_docs.py --check  # exit 1 if the page is stale
"""

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "config.schema.json"
PAGE = ROOT / "docs" / "configuration.md"

HEADER = """# Configuration reference

Generated from `schemas/config.schema.json` by `scripts/gen_config_docs.py`; do not edit by hand.
The hub reads one TOML file (`exchange serve --config FILE`); `exchange config check FILE` validates it
and names the offending key. `--host`, `--port`, `--data-dir` and `--log-format` override the file.
See `examples/hub.toml` for a runnable example.
"""


def _type(spec: dict[str, Any]) -> str:
    kind = spec.get("type", "")
    if kind == "array":
        return f"array of {_type(spec.get('items', {}))}"
    return str(kind)


def _rows(prefix: str, spec: dict[str, Any], required: set[str]) -> list[str]:
    rows = []
    for name, prop in spec.get("properties", {}).items():
        key = f"{prefix}{name}"
        default = json.dumps(prop["default"]) if "default" in prop else ("required" if name in required else "")
        limits = ", ".join(f"{k} {prop[k]}" for k in ("minimum", "maximum", "minItems", "pattern") if k in prop)
        description = prop.get("description", "")
        rows.append(f"| `{key}` | {_type(prop)} | {default} | {description} {('(' + limits + ')') if limits else ''} |")
        if prop.get("type") == "object":
            rows += _rows(f"{key}.", prop, set(prop.get("required", [])))
        if prop.get("type") == "array" and prop.get("items", {}).get("type") == "object":
            rows += _rows(f"{key}[].", prop["items"], set(prop["items"].get("required", [])))
    return rows


def render() -> str:
    schema = json.loads(SCHEMA.read_text())
    table = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    table += [r.replace(" )", ")").replace("  |", " |") for r in _rows("", schema, set(schema.get("required", [])))]
    return HEADER + "\n" + "\n".join(table) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if PAGE.read_text() != text:
            print(f"{PAGE} is stale: run python scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
