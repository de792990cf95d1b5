"""kiki|en's voice chain on kaia's own BrainBox with chara's production profile, from the sentence
pool to the checkpoint report, run once per contract session (the package fixture ``voice_chain``
in conftest.py). test_voice_chain_contract.py asserts on the chain, test_piper_training_contract.py
on its training: the suite trains Piper on the CPU once for both.

kaia's CosyVoice, Vosk, Resemblyzer, PiperTraining and Piper controllers and container apps;
Resemblyzer and Piper run for real, the others with their model call stood in
(tests/contract/standins/, each named for what it is)."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from chara_assets.definitions import defs
from chara_assets.demo import DemoSize, run_configs
from chara_assets.partitions import CHARACTER_DIMENSION
from chara_resources.avatar import AvatarResource
from chara_resources.brainbox import BrainBoxResource
from chara_resources.storage import CharaStorage, FolderIOManager

from .conftest import ContractBrainBox

PAIR = "kiki|en"
LINES = 8
EPOCHS = 3
# Every clip in one batch: one batch per epoch (two optimizer steps), whatever number of lines
# trimmed_clips accepts, so that checkpoint steps are base + 2 x epoch.
BATCH_SIZE = LINES


@dataclass
class VoiceChain:
    server: ContractBrainBox
    home: Path
    instance: dg.DagsterInstance
    base_epoch: int  # lessac's, as kaia's installer records it
    base_step: int
    runs: dict[str, dg.ExecuteInProcessResult] = field(default_factory=dict)  # by first asset
    training_s: float = 0.0

    @property
    def result(self) -> dg.ExecuteInProcessResult:
        """The run of piper_checkpoints and checkpoint_report."""
        return self.runs["piper_checkpoints"]

    def training_folder(self, training_id: str) -> Path:
        return self.server.resources("PiperTraining") / "training" / training_id

    def messages(self) -> list[str]:
        """What the training run logged."""
        logs = self.instance.all_logs(self.result.run_id)
        return [e.user_message for e in logs if e.user_message]

    def run(self, assets: list[str], partition: str, config=None) -> dg.ExecuteInProcessResult:
        storage = CharaStorage(root=str(self.home))
        result = dg.materialize(
            list(defs.assets),
            selection=assets,
            instance=self.instance,
            resources={
                **defs.resources,
                "storage": storage,
                "io_manager": FolderIOManager(storage=storage),
                "brainbox": BrainBoxResource(url=self.server.url, role_profile="production"),
                "avatar": AvatarResource(url="", local_folder=str(self.home / "avatar")),
            },
            partition_key=partition,
            run_config=config or {},
            raise_on_error=False,
        )
        self.runs[assets[0]] = result
        assert result.success, self.failure(result)
        return result

    def failure(self, result: dg.ExecuteInProcessResult) -> str:
        errors = [str(e.step_failure_data.error) for e in result.get_step_failure_events()]
        return "\n".join(errors)[-4000:] + "\n" + self.server.container_logs()[-4000:]


def run_voice_chain(server: ContractBrainBox, home: Path, instance: dg.DagsterInstance):
    # (imported here: installs.py takes the base-model installer from the training contract)
    from .standins.installs import install_cosyvoice, install_piper_base_model, install_vosk_whisper

    install_cosyvoice(server)
    install_vosk_whisper(server, "en")
    base_epoch, base_step = install_piper_base_model(server, "lessac")
    instance.add_dynamic_partitions(CHARACTER_DIMENSION, ["kiki"])
    chain = VoiceChain(server, home, instance, base_epoch, base_step)
    size = DemoSize(lines=LINES, epochs=EPOCHS, batch_size=BATCH_SIZE)
    configs = run_configs(size, "en")
    training = configs["training_job"]["ops"]["piper_checkpoints"]["config"]
    training.pop("base_models")  # production: kaia's lessac
    # The cloner is a stand-in that does not sound like kiki's sample: clips are compared with
    # their own mean voice, as chara does with its embedded stand-in.
    configs["voice_job"]["ops"]["trimmed_clips"] = {"config": {"speaker_reference": "clips"}}
    chain.run(["sentence_pool", "pool_phonemes"], "en")
    chain.run(["voice_sample"], PAIR)
    chain.run(["text_corpus"], PAIR, configs["corpus_job"])
    voice = [
        "reviewed_corpus",
        "augmented_lines",
        "cloner_voice",
        "cloned_audio",
        "trimmed_clips",
        "piper_archive",
    ]
    chain.run(voice, PAIR, configs["voice_job"])
    started = time.monotonic()
    chain.run(["piper_checkpoints", "checkpoint_report"], PAIR, configs["training_job"])
    chain.training_s = time.monotonic() - started
    print(f"piper_checkpoints + checkpoint_report on kaia's BrainBox: {chain.training_s:.0f} s")
    return chain
