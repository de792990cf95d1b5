"""``chara check``: everything a run will read, validated with the checks the assets run.

Characters and users (their fields, where their voice files are, and each voice file decoded:
readable, not silent, not noise, a sane length) and the reply templates. Each problem is one
line that names the file, the field and what is wrong, with the same message the asset that
reads the file fails with.
"""

from dataclasses import dataclass, field

from .characters.resource import CharacterCatalog
from .paraphrase.resource import TemplateFolder


@dataclass
class ConfigurationReport:
    """What ``chara check`` found: counts of the valid files and one line per problem."""

    characters: int = 0
    users: int = 0
    templates: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (
            f"{self.characters} characters, {self.users} users, {self.templates} templates; "
            f"{len(self.errors)} with problems"
        )


def check_configuration(
    characters: CharacterCatalog, templates: TemplateFolder
) -> ConfigurationReport:
    """Validate the character, user and template folders the resources point to."""
    report = ConfigurationReport()
    for folder in characters.voice_paths:
        if not folder.is_dir():
            report.errors.append(f"CHARA_VOICE_FOLDERS: {folder}: no such folder")
    try:
        catalog = characters.load(check_audio=True)
    except FileNotFoundError as exc:
        report.errors.append(f"{exc} (CHARA_CHARACTERS)")
    else:
        report.characters = len(catalog.characters)
        report.users = len(catalog.users)
        report.errors += [str(error) for error in catalog.errors]
        if not characters.users_path.is_dir():
            report.errors.append(f"users folder not found: {characters.users_path} (CHARA_USERS)")
    try:
        library = templates.load()
    except FileNotFoundError as exc:
        report.errors.append(f"{exc} (CHARA_TEMPLATES)")
    else:
        report.templates = len(library.templates)
        report.errors += [str(error) for error in library.errors]
    return report
