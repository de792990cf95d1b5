"""kaia-avatar 5.2.0's own AvatarDaemon with the services chara feeds, for the contract tests.

python -m tests.contract.avatar_daemon AVATAR_URL BRAINBOX_URL RESOURCES_FOLDER CHARACTER

Bound as kaia's own app binds them (kaia's ``AvatarDaemonAppSettings``): ``BrainBoxService``
(asynchronous) over the given BrainBox, ``StateToUtterancesApplicationService``,
``ParaphraseService`` with kaia's content strategy and fed only by the former, and the two
identification services, ``SpeakerIdentificationService`` (voice) and ``UserWalkInService``
(face), each with ``BestOfStrategy(k=10)``. ``RESOURCES_FOLDER`` is the Avatar server's own
resources folder: the services read their files from disk, not over HTTP. The state starts with
``CHARACTER`` and English. Nothing here is changed from kaia's code; errors in a handler come
back on the message bus as ``ExceptionEvent`` messages (``add_error_events``).
"""

import sys
import warnings
from pathlib import Path


def build_daemon(avatar_url: str, brainbox_url: str, resources: Path, character: str):
    from avatar import daemon as s
    from avatar.app import AvatarApi
    from avatar.daemon.common import content_manager as cm
    from avatar.daemon.common.vector_identificator import BestOfStrategy
    from avatar.messaging import AvatarDaemon
    from brainbox import BrainBox

    api = AvatarApi(avatar_url)
    state = s.State(character=character, language="en")
    daemon = AvatarDaemon(
        api.create_client(),
        add_error_events=True,
        resources_folder=resources,
        timeout_in_pull_in_seconds=0.1,
    )
    brainbox = s.BrainBoxService(BrainBox.Api(brainbox_url))
    brainbox.binding_settings.asynchronous(True)
    paraphrase = s.ParaphraseService(
        state, cm.SequentialStrategy(cm.NewContentStrategy(), cm.AnyContentStrategy())
    )
    paraphrase.binding_settings.bind_type(s.InternalTextCommand).to(
        s.StateToUtterancesApplicationService
    )
    for service in (
        brainbox,
        s.StateToUtterancesApplicationService(state),
        paraphrase,
        s.SpeakerIdentificationService(api, BestOfStrategy(10)),
        s.UserWalkInService(api, BestOfStrategy(10)),
    ):
        daemon.rules.bind(service)
    return daemon


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # starlette deprecation noise on import
    avatar_url, brainbox_url, folder, character = sys.argv[1:5]
    build_daemon(avatar_url, brainbox_url, Path(folder), character).run()
