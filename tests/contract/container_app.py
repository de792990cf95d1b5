"""Start a kaia decider's container app as the contract stand-in for Docker runs it.

    python container_app.py APP_FOLDER [ARGS...]      (run by docker_standin.py inside bwrap)

What a container gives its app, and only that, is provided here:
* its network: the app's server port (8080 inside every container) is served on the host port
  that ``docker run --publish`` named (``CHARA_CONTRACT_PORTS``), on loopback only;
* for the GPU deciders, whose models cannot run here, the model library alone is replaced by a
  stand-in module from ``tests/contract/standins/<image>.py`` (if one exists): it is loaded
  before the app and installs itself where the app imports its model from.
Then the app's own ``main.py`` runs unchanged, as ``__main__``, with the container's arguments.
"""

import importlib.util
import json
import os
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _map_ports() -> None:
    ports = {int(k): int(v) for k, v in json.loads(os.environ["CHARA_CONTRACT_PORTS"]).items()}
    from foundation_kaia.marshalling.protocol.server import web_app_entry_point

    original = web_app_entry_point.WebAppEntryPoint.run

    def run(self):
        self.port = ports.get(self.port, self.port)
        self.host = "127.0.0.1"  # Docker would publish on every interface; tests stay local
        return original(self)

    web_app_entry_point.WebAppEntryPoint.run = run


def _load_model_stand_in(image: str) -> None:
    path = HERE / "standins" / f"{image}.py"
    if not path.is_file():
        return
    spec = importlib.util.spec_from_file_location(f"chara_contract_standin_{image}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"[contract] model stand-in for {image}: {module.__doc__.strip().splitlines()[0]}")


def main() -> None:
    app = Path(sys.argv[1])
    sys.argv = [str(app / "main.py"), *sys.argv[2:]]
    sys.path.insert(0, str(app))
    _map_ports()
    _load_model_stand_in(os.environ.get("CHARA_CONTRACT_IMAGE", ""))
    sys.stdout.reconfigure(line_buffering=True)
    runpy.run_path(str(app / "main.py"), run_name="__main__")


if __name__ == "__main__":
    main()
