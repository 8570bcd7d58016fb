"""A T5 tokenizer built in code, for the CPU-scale presets and tests (no file, no hub).

Whole common words get their own piece; anything else falls back to single characters, so distinct prompts
map to distinct token sequences (plain ``T5Tokenizer()`` maps every word to <unk>).
"""

from __future__ import annotations

import string
from functools import lru_cache

from transformers import T5Tokenizer

_WORDS = """
a an the of and in on at with by to from into over under near behind front side top its his her their is are
while during through across along around up down left right moving walking running flying swimming jumping
sitting standing dancing playing riding driving eating drinking cooking reading writing singing talking looking
person man woman child boy girl people couple crowd dog cat horse bird fish cow sheep bear elephant giraffe zebra
panda lion tiger monkey rabbit duck car bus truck train bicycle motorcycle boat airplane kite ball umbrella
chair table bed cup bottle book phone laptop clock vase flower tree grass forest mountain river lake sea ocean
beach sky cloud clouds sun moon star snow rain water fire city street road building house room kitchen garden
park field desert bridge tower castle night day sunset sunrise morning evening light dark bright
red orange yellow green blue purple pink brown black white gray grey gold silver
big small large tiny tall short old young new beautiful cute happy slow fast quickly slowly gently
style painting photo video shot view close camera pan zoom tilt still static time lapse motion
circle square triangle shape one two three four five
""".split()


@lru_cache(maxsize=1)
def _pieces() -> tuple[tuple[str, float], ...]:
    special = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = [("\u2581" + w, -1.0) for w in dict.fromkeys(_WORDS)]
    chars = [("\u2581", -3.0)] + [(c, -5.0) for c in string.ascii_letters + string.digits + string.punctuation]
    return tuple(special + words + chars)


def builtin_tokenizer() -> T5Tokenizer:
    """The in-code T5 tokenizer: ``len(tokenizer)`` is its vocabulary size."""
    return T5Tokenizer(vocab=list(_pieces()), extra_ids=0)
