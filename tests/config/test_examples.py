"""Every command in a YAML comment under conf/ works as typed in bash: shlex splits it as bash would,
Hydra parses its overrides, and every key it names exists (issue 31: the folder example's
``data.corpus.speaker_regex='^([a-z]+)_'`` lost its quotes to bash and failed in Hydra's lexer)."""

from __future__ import annotations

import re
import shlex

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from asr_transfer.pipeline.cli_keys import check_keys
from tests.conftest import CONF

# "python train.py ...", "python -m asr_transfer.x ...": the command runs to a backtick, or to a gap of
# 3+ spaces before a remark (the comments' layout); prose after it has no key=value words.
COMMAND = re.compile(r"python\s+(-m\s+\S+|\S+\.py)(.*)")
SCRIPTS = {
    "train.py": "train",
    "check_data.py": "train",
    "eval.py": "eval",
    "predict.py": "predict",
    "explain.py": "explain",
}


def comment_examples() -> list[tuple[str, str, list[str]]]:
    """(``file:line``, script, the words bash passes it) for every command in a comment under conf/."""
    out = []
    for path in sorted(CONF.rglob("*.yaml")):
        for n, text in enumerate(path.read_text().splitlines(), 1):
            comment = text.split("#", 1)[1] if "#" in text else ""
            m = COMMAND.search(comment)
            if m:
                rest = re.split(r"`|\s{3,}", m.group(2))[0]
                out.append((f"{path.relative_to(CONF)}:{n}", m.group(1), shlex.split(rest)))
    return out


EXAMPLES = comment_examples()


def test_the_comments_hold_examples_including_the_folder_regex():
    assert len(EXAMPLES) >= 12
    words = [w for _, _, argv in EXAMPLES for w in argv]
    assert "data.corpus.speaker_regex='^([a-z]+)_'" in words  # what bash hands Hydra: quotes kept


@pytest.mark.parametrize("where,script,argv", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_a_comment_example_parses_as_typed_in_bash(where, script, argv):
    assert not any(w[0] in "<>|;&" for w in argv), f"{where}: bash would redirect or split {argv}"
    overrides = [w for w in argv if "=" in w and not w.startswith("-")]
    OverridesParser.create().parse_overrides(overrides)  # raises on what Hydra's lexer cannot read
    if script in SCRIPTS:  # the keys it names exist (data.* of eval/predict: the checkpoint's data)
        name = SCRIPTS[script]
        check_keys(overrides, name, skip=("hydra.",) if name == "train" else ("hydra.", "data."))


def test_the_old_folder_example_is_what_bash_breaks():
    (word,) = shlex.split("data.corpus.speaker_regex='^([a-z]+)_'")
    with pytest.raises(Exception, match="LexerNoViableAltException|mismatched|extraneous|no viable"):
        OverridesParser.create().parse_overrides([word])
