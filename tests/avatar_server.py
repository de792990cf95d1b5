"""Run the real kaia-avatar server on a loopback port, for tests.

python -m tests.avatar_server PORT FOLDER     (cache and resources under FOLDER)
"""

import sys
import warnings
from pathlib import Path

if __name__ == "__main__":
    warnings.simplefilter("ignore")  # starlette deprecation noise on import
    from avatar.app import AvatarServer, AvatarServerSettings

    port, folder = int(sys.argv[1]), Path(sys.argv[2])
    settings = AvatarServerSettings(
        port=port, cache_folder=folder / "cache", resources_folder=folder / "resources"
    )
    entry = AvatarServer(settings).create_web_app_entry_point()
    entry.host = "127.0.0.1"  # the server has no authentication
    entry.run()
