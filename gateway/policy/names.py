"""CloudEvents attribute names (core spec "Naming Conventions"): lowercase letters and digits,
spec 0.3's beginning with a letter, at most MAX_NAME_LENGTH (the spec's 20 is a SHOULD NOT).
One rule for ingress (gateway.events) and subscription filters (gateway.policy.filters), so every
attribute an event can carry can be filtered on.

Also what a String may not hold (core spec "Type System": control characters, surrogates,
noncharacters), for ingress (gateway.cetypes) and for the attributes the gateway writes itself
into dead letters (gateway.policy.deadletters)."""

from __future__ import annotations

import re
from typing import Final

MAX_NAME_LENGTH: Final = 64
ATTRIBUTE_NAME: Final = {
    "1.0": re.compile(rf"[a-z0-9]{{1,{MAX_NAME_LENGTH}}}"),
    "0.3": re.compile(rf"[a-z][a-z0-9]{{0,{MAX_NAME_LENGTH - 1}}}"),  # 0.3: begins with a letter
}

_NONCHARACTERS = "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
)
DISALLOWED_IN_STRING: Final = re.compile(
    f"[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef\ud800-\udfff{_NONCHARACTERS}]"
)
