"""Paraphrase files are pickles: what chara refuses to load, and when it reads them at all."""

from __future__ import annotations

import pickle

import pytest

from chara_resources.avatar import AvatarError, AvatarResource, load_paraphrase_pickle


def _global_call(module: str, name: str) -> bytes:
    """A protocol-4 pickle that looks up ``module.name`` and calls it with no arguments."""

    def text(value: str) -> bytes:
        data = value.encode()
        return pickle.SHORT_BINUNICODE + bytes([len(data)]) + data

    return (
        b"\x80\x04"
        + text(module)
        + text(name)
        + pickle.STACK_GLOBAL
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + pickle.STOP
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("avatar.daemon.paraphrase_service", "os.getcwd"),  # dotted: reaches the os module
        ("avatar.daemon.paraphrase_service", "copy"),  # imported there, not defined there
        ("posix", "getcwd"),
        ("builtins", "eval"),
    ],
)
def test_only_classes_defined_in_kaia_packages_load(module: str, name: str) -> None:
    with pytest.raises(AvatarError, match="refusing to load"):
        load_paraphrase_pickle(_global_call(module, name), "resources/x.pkl")


@pytest.mark.slow
def test_a_kaia_record_still_loads() -> None:
    from avatar.daemon import ParaphraseRecord
    from grammatron import Template

    records = [ParaphraseRecord("r", Template("Hi!").with_name("greeting"), "greeting", "", "en")]
    [back] = load_paraphrase_pickle(pickle.dumps(records), "resources/x.pkl")
    assert back.template.utter({}).to_str() == "Hi!"


def test_a_server_is_trusted_only_when_configured() -> None:
    assert AvatarResource().is_trusted()  # the local folder is ours
    assert not AvatarResource(url="http://assistant:13002").is_trusted()
    assert AvatarResource(url="http://assistant:13002", trusted=True).is_trusted()
