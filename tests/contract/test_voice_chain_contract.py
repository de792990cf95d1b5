"""The voice chain on kaia's own BrainBox with chara's production profile, from the sentence pool
to the checkpoint report (issue 13's acceptance): kaia's CosyVoice, Vosk, Resemblyzer,
PiperTraining and Piper controllers and container apps; Resemblyzer and Piper run for real, the
others with their model call stood in (tests/contract/standins/, each named for what it is).
The chain runs once for the package (``voice_chain``); test_piper_training_contract.py checks its
training against kaia's files."""

from chara_resources.storage import load_manifest

from .voice_chain import VoiceChain


def test_voice_chain_from_pool_to_report_on_kaias_brainbox(voice_chain: VoiceChain) -> None:
    home = voice_chain.home
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
    assert voice_chain.result.success
