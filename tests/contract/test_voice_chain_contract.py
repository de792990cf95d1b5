"""The voice chain on kaia's own BrainBox with chara's production profile, from the sentence pool
to the checkpoint report (issue 13's acceptance): kaia's CosyVoice, Vosk, Resemblyzer,
PiperTraining and Piper controllers and container apps; Resemblyzer and Piper run for real, the
others with their model call stood in (tests/contract/standins/, each named for what it is)."""

from pathlib import Path

import dagster as dg

from chara_assets.definitions import defs
from chara_assets.demo import DemoSize, run_configs
from chara_assets.partitions import CHARACTER_DIMENSION
from chara_resources.avatar import AvatarResource
from chara_resources.brainbox import BrainBoxResource
from chara_resources.storage import CharaStorage, FolderIOManager, load_manifest

from .conftest import ContractBrainBox
from .standins.installs import install_cosyvoice, install_piper_base_model, install_vosk_whisper

PAIR = "kiki|en"
LINES = 8
EPOCHS = 3


def _run(home: Path, server: ContractBrainBox, assets: list[str], partition: str, config=None):
    storage = CharaStorage(root=str(home))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(CHARACTER_DIMENSION, ["kiki"])
        result = dg.materialize(
            list(defs.assets),
            selection=assets,
            instance=instance,
            resources={
                **defs.resources,
                "storage": storage,
                "io_manager": FolderIOManager(storage=storage),
                "brainbox": BrainBoxResource(url=server.url, role_profile="production"),
                "avatar": AvatarResource(url="", local_folder=str(home / "avatar")),
            },
            partition_key=partition,
            run_config=config or {},
            raise_on_error=False,
        )
    assert result.success, _failure(result, server)
    return result


def _failure(result: dg.ExecuteInProcessResult, server: ContractBrainBox) -> str:
    errors = [str(e.step_failure_data.error) for e in result.get_step_failure_events()]
    return "\n".join(errors)[-4000:] + "\n" + server.container_logs()[-4000:]


def test_voice_chain_from_pool_to_report_on_kaias_brainbox(
    contract_brainbox: ContractBrainBox, tmp_path: Path
) -> None:
    install_cosyvoice(contract_brainbox)
    install_vosk_whisper(contract_brainbox, "en")
    install_piper_base_model(contract_brainbox, "lessac")
    home = tmp_path / "home"
    configs = run_configs(DemoSize(lines=LINES, epochs=EPOCHS, batch_size=4), "en")
    training = configs["training_job"]["ops"]["piper_checkpoints"]["config"]
    training.pop("base_models")  # production: kaia's lessac
    # The cloner is a stand-in that does not sound like kiki's sample: clips are compared with
    # their own mean voice, as chara does with its embedded stand-in.
    configs["voice_job"]["ops"]["trimmed_clips"] = {"config": {"speaker_reference": "clips"}}
    _run(home, contract_brainbox, ["sentence_pool", "pool_phonemes"], "en")
    _run(home, contract_brainbox, ["voice_sample"], PAIR)
    _run(home, contract_brainbox, ["text_corpus"], PAIR, configs["corpus_job"])
    voice = [
        "reviewed_corpus",
        "augmented_lines",
        "cloner_voice",
        "cloned_audio",
        "trimmed_clips",
        "piper_archive",
    ]
    _run(home, contract_brainbox, voice, PAIR, configs["voice_job"])
    trained = _run(
        home, contract_brainbox, ["piper_checkpoints", "checkpoint_report"], PAIR,
        configs["training_job"],
    )  # fmt: skip

    manifest = load_manifest(home / "assets/piper_checkpoints/kiki/en")
    epochs = [c.epoch for c in manifest.checkpoints]
    assert epochs == [1, 2, 3]  # one per epoch, counted from lessac's own 2164
    assert manifest.base_model == "lessac" and manifest.base_epochs == 2164
    report = home / "assets/checkpoint_report/kiki/en"
    html = (report / "report.html").read_text(encoding="utf-8")
    for name in (c.name for c in manifest.checkpoints):
        assert name in html
    clips = sorted(report.rglob("*.wav"))
    assert len(clips) >= len(epochs)
    assert trained.success
