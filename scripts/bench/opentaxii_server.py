"""OpenTAXII (TAXII 2.1, SQLite backend) for the TAXII benchmark, run by OpenTAXII's own interpreter:

    /tmp/otvenv/bin/python scripts/bench/opentaxii_server.py WORKDIR PORT

It writes its config into WORKDIR, creates one API root, one collection and an admin account (bench /
bench-password), writes their ids to WORKDIR/opentaxii-ids.json and serves on 127.0.0.1:PORT with Flask's threaded
server, as `opentaxii-run-dev` does. Standard library and opentaxii only: it never runs in the hub's venv.
"""

import json
import os
import sys
from pathlib import Path

USER, PASSWORD = "bench", "bench-password"

CONFIG = """
domain: "127.0.0.1:{port}"
support_basic_auth: yes
return_server_error_details: yes
auth_api:
  class: opentaxii.auth.sqldb.SQLDatabaseAPI
  parameters:
    db_connection: sqlite:///{work}/auth.db
    create_tables: yes
    secret: opentaxii-benchmark-secret-not-for-production-use
    token_ttl_secs: 3600
taxii1:
taxii2:
  persistence_api:
    class: opentaxii.persistence.sqldb.Taxii2SQLDatabaseAPI
    parameters:
      db_connection: sqlite:///{work}/data.db
      create_tables: yes
  max_content_length: 67108864
  title: OpenTAXII benchmark server
  public_discovery: yes
logging:
  opentaxii: warning
  root: warning
"""


def main() -> None:
    work, port = Path(sys.argv[1]).resolve(), int(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    config = work / "opentaxii.yml"
    config.write_text(CONFIG.format(port=port, work=work))
    os.environ["OPENTAXII_CONFIG"] = str(config)  # read when opentaxii.cli is imported

    from opentaxii.cli import app
    from opentaxii.entities import Account

    with app.app_context():
        api = app.taxii_server.servers.taxii2.persistence.api
        root = api.add_api_root(title="bench", description="benchmark API root", default=True)
        collection = api.add_collection(api_root_id=str(root.id), title="bench", description="benchmark",
                                        alias="bench", is_public=False, is_public_write=False)
        app.taxii_server.auth.api.update_account(
            Account(id=None, username=USER, is_admin=True, permissions={}), PASSWORD)
    (work / "opentaxii-ids.json").write_text(json.dumps({"api_root": str(root.id), "collection": str(collection.id)}))
    app.debug = False
    app.run(host="127.0.0.1", port=port, threaded=True)


if __name__ == "__main__":
    main()
