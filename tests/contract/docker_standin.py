"""A stand-in for the ``docker`` command line, so kaia's production controllers run without Docker.

kaia-brainbox's controllers start, watch and stop each decider's container by running ``docker``
commands (``run``, ``logs --follow``, ``ps``, ``stop``, ``rm``, ``images``). This program takes
their place on the BrainBox server's ``PATH`` and does what Docker would with the same arguments,
using what this machine has instead of an image:

* ``docker run --publish H:C --mount type=bind,source=S,target=T --env K=V --name N IMAGE ARGS``
  starts the image's container app (``brainbox/deciders/**/app/main.py`` from the installed
  wheel) as a local process in its own mount namespace (bubblewrap), with the same bind mounts
  (``/resources`` is the decider's resource folder), the same environment and arguments, and its
  port ``C`` served on the host's ``H`` (loopback only). The image's own files that the app expects
  (``/home/app/.local/bin/espeak-phonemizer``, ``/lsiopy/bin/piper``, ``/bin/ollama``...) come from
  this environment; see ``IMAGE_FILES``.
* Everything else answers as Docker would for those containers; ``build``/``pull`` refuse.

State (one JSON file per container, its log) lives in ``$CHARA_CONTRACT_DOCKER_STATE``; the images
this stand-in knows are listed in ``images.json`` there, written by the contract server.
Nothing of kaia's code is changed: only the program it calls is another one.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("CHARA_CONTRACT_DOCKER_STATE", "/nonexistent"))
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def _images() -> dict[str, dict]:
    """image name -> {"app": folder of the container app, "files": {container path: host path}}"""
    return json.loads((STATE / "images.json").read_text())


def _containers() -> list[dict]:
    found = []
    for path in sorted((STATE / "containers").glob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _find(ref: str) -> dict | None:
    for c in _containers():
        if ref in (c["name"], c["id"]) or (len(ref) >= 12 and c["id"].startswith(ref)):
            return c
    return None


def _fail(message: str, code: int = 1) -> int:
    print(f"Error response from daemon (contract stand-in): {message}", file=sys.stderr)
    return code


def _parse_run(args: list[str]) -> dict:
    spec: dict = {"ports": {}, "mounts": [], "env": {}, "name": None, "rm": False}
    i = 0
    with_value = {"--publish", "-p", "--mount", "--env", "-e", "--name", "--user", "-u"}
    with_value |= {"--restart", "--platform", "--gpus", "-v", "--volume", "--network"}
    while i < len(args):
        a = args[i]
        if not a.startswith("-"):
            break
        if a in with_value:
            value = args[i + 1]
            i += 2
            if a in ("--publish", "-p"):
                host, _, container = value.rpartition(":")
                spec["ports"][int(container)] = int(host.rsplit(":", 1)[-1])
            elif a == "--mount":
                fields = dict(part.split("=", 1) for part in value.split(","))
                spec["mounts"].append((fields["source"], fields["target"]))
            elif a in ("-v", "--volume"):
                source, target = value.split(":")[:2]
                spec["mounts"].append((source, target))
            elif a in ("--env", "-e"):
                key, _, val = value.partition("=")
                spec["env"][key] = val
            elif a == "--name":
                spec["name"] = value
            elif a == "--gpus":
                spec["gpus"] = value
        else:
            if a == "--rm":
                spec["rm"] = True
            i += 1
    spec["image"] = args[i] if i < len(args) else None
    spec["args"] = args[i + 1 :]
    return spec


def _bind_tree(host: Path, targets: list[str]) -> list[str]:
    """Bind ``host`` (a folder of the real root) into the new root, leaving room for the
    container's own paths in ``targets``: a folder that holds one of them is made anew and its
    other entries are bound one by one."""
    inside = [t for t in targets if t == str(host) or t.startswith(f"{host}/")]
    if not inside:
        if host.is_symlink():
            return ["--symlink", os.readlink(host), str(host)]
        return ["--dev-bind" if str(host) == "/dev" else "--bind", str(host), str(host)]
    if str(host) in inside:
        return []  # the container mounts its own folder here
    args = ["--dir", str(host)]
    if host.is_symlink():  # e.g. /bin -> usr/bin: link its entries instead
        real = host.resolve()
        for entry in sorted(real.iterdir()):
            if str(host / entry.name) not in targets:
                args += ["--symlink", str(entry), str(host / entry.name)]
        return args
    for entry in sorted(host.iterdir()) if host.is_dir() else []:
        args += _bind_tree(entry, targets)
    return args


def _bwrap_command(image: dict, spec: dict, shim_args: list[str]) -> list[str]:
    """A mount namespace with the host's folders and, on top, the container's own paths: its
    bind mounts and the image's files."""
    files = image.get("files", {})
    targets = [target for _source, target in spec["mounts"]] + list(files)
    # Its own process namespace, as a container: when the app ends, whatever it started ends.
    command = ["bwrap", "--unshare-pid", "--proc", "/proc"]
    for entry in sorted(Path("/").iterdir()):
        if entry.name in ("proc",):
            continue
        command += _bind_tree(entry, targets)
    for target in targets:  # mount points under a fresh folder need their parents
        for parent in reversed(Path(target).parents[:-1]):
            if not any(str(parent) == str(e) for e in Path("/").iterdir()):
                command += ["--dir", str(parent)]
    for source, target in spec["mounts"]:
        Path(source).mkdir(parents=True, exist_ok=True)
        command += ["--bind", source, target]
    for target, source in files.items():
        command += ["--ro-bind", source, target]
    command += ["--chdir", image["app"]]
    return command + shim_args


def _run(args: list[str]) -> int:
    spec = _parse_run(args)
    if spec["image"] == "hello-world":  # kaia's GPU probe: `docker run --gpus all hello-world`
        return _fail("could not select device driver with capabilities: [[gpu]]", 125)
    images = _images()
    image = images.get(spec["image"])
    if image is None:
        return _fail(f"Unable to find image '{spec['image']}:latest' locally", 125)
    name = spec["name"] or f"chara-contract-{secrets.token_hex(4)}"
    old = _find(name)
    if old is not None and _alive(old["pid"]):
        return _fail(f'Conflict. The container name "/{name}" is already in use', 125)
    container_id = secrets.token_hex(32)
    (STATE / "containers").mkdir(parents=True, exist_ok=True)
    log = STATE / "logs" / f"{container_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARA_CONTRACT_DOCKER")}
    env.update(spec["env"])
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = os.pathsep.join(
        [image["app"], *image.get("pythonpath", []), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["CHARA_CONTRACT_PORTS"] = json.dumps(spec["ports"])
    env["CHARA_CONTRACT_IMAGE"] = spec["image"]
    shim = [sys.executable, str(HERE / "container_app.py"), image["app"], *spec["args"]]
    command = _bwrap_command(image, spec, shim)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    record = {
        "id": container_id,
        "name": name,
        "image": spec["image"],
        "pid": process.pid,
        "ports": spec["ports"],
        "rm": spec["rm"],
        "log": str(log),
        "started": time.time(),
    }
    (STATE / "containers" / f"{container_id}.json").write_text(json.dumps(record))
    print(container_id)
    return 0


def _stop(refs: list[str]) -> int:
    for ref in refs:
        c = _find(ref)
        if c is None:
            print(f"Error response from daemon: No such container: {ref}", file=sys.stderr)
            continue
        if _alive(c["pid"]):
            with _suppress():
                os.killpg(c["pid"], signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(c["pid"]) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(c["pid"]):
                with _suppress():
                    os.killpg(c["pid"], signal.SIGKILL)
        if c["rm"]:
            _remove(c)
        print(ref)
    return 0


def _remove(c: dict) -> None:
    (STATE / "containers" / f"{c['id']}.json").unlink(missing_ok=True)


def _rm(refs: list[str]) -> int:
    for ref in [r for r in refs if not r.startswith("-")]:
        c = _find(ref)
        if c is None:
            print(f"Error response from daemon: No such container: {ref}", file=sys.stderr)
            continue
        if _alive(c["pid"]):
            return _fail(f"cannot remove container {ref}: container is running")
        _remove(c)
        print(ref)
    return 0


def _logs(args: list[str]) -> int:
    follow = "--follow" in args or "-f" in args
    ref = [a for a in args if not a.startswith("-")][-1]
    c = _find(ref)
    if c is None:
        return _fail(f"No such container: {ref}")
    with open(c["log"], "rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                continue
            if not follow or not _alive(c["pid"]):
                return 0
            time.sleep(0.2)


def _ps(args: list[str]) -> int:
    show_all = "-a" in args or "--all" in args
    image = None
    if "--filter" in args:
        key, _, value = args[args.index("--filter") + 1].partition("=")
        if key == "ancestor":
            image = value.split(":")[0]
    for c in _containers():
        if image is not None and c["image"] != image:
            continue
        if not show_all and not _alive(c["pid"]):
            continue
        print(c["id"][:12])
    return 0


def _images_command(args: list[str]) -> int:
    known = _images()
    rest = [a for a in args if not a.startswith("-")]
    fmt = args[args.index("--format") + 1] if "--format" in args else None
    if fmt is not None:
        rest = [a for a in rest if a != fmt]
    for name in known:
        if rest and rest[0].split(":")[0] != name:
            continue
        if "-q" in args:
            print(f"sha256:{abs(hash(name)):x}"[:19])
        elif fmt is not None:
            print(fmt.replace("{{.Repository}}", name).replace("{{.Size}}", "0B"))
        else:
            print(name)
    return 0


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], (ProcessLookupError, PermissionError))


def main(argv: list[str]) -> int:
    if not argv:
        return _fail("no command")
    command, args = argv[0], argv[1:]
    if shutil.which("bwrap") is None and command == "run":
        return _fail("bubblewrap (bwrap) is needed to start container apps without Docker")
    handlers = {
        "run": _run,
        "stop": _stop,
        "kill": _stop,
        "rm": _rm,
        "logs": _logs,
        "ps": _ps,
        "images": _images_command,
    }
    if command in handlers:
        return handlers[command](args)
    return _fail(f"`docker {command}` is not available: this is chara's contract stand-in")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
