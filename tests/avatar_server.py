"""Run the real kaia-avatar server on a loopback port, for tests.

python -m tests.avatar_server PORT FOLDER [CACHE]   (resources under FOLDER, and its cache
under FOLDER too unless CACHE names another folder: kaia's own app gives Avatar BrainBox's
cache folder, so that both servers see the same media files)
"""

import sys
import warnings
from pathlib import Path

if __name__ == "__main__":
    warnings.simplefilter("ignore")  # starlette deprecation noise on import
    from avatar.app import AvatarServer, AvatarServerSettings

    port, folder = int(sys.argv[1]), Path(sys.argv[2])
    cache = Path(sys.argv[3]) if len(sys.argv) > 3 else folder / "cache"
    settings = AvatarServerSettings(
        port=port, cache_folder=cache, resources_folder=folder / "resources"
    )
    entry = AvatarServer(settings).create_web_app_entry_point()
    entry.host = "127.0.0.1"  # the server has no authentication
    entry.run()
