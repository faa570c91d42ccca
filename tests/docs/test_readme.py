"""The README's settings table names every setting of every service, and nothing else."""

import re
from pathlib import Path

from services.registry import SERVICE_NAMES, get_spec

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme():
    documented = set(re.findall(r"^\| `(LOYALTY_[A-Z_]+)` \|", README.read_text(), re.MULTILINE))
    declared = {
        get_spec(name).settings_cls.env_name(field)
        for name in SERVICE_NAMES
        for field in get_spec(name).settings_cls.model_fields
    }
    assert documented == declared
