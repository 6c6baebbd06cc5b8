"""CloudEvents attribute names (core spec "Naming Conventions"): lowercase letters and digits,
spec 0.3's beginning with a letter, at most MAX_NAME_LENGTH (the spec's 20 is a SHOULD NOT).
One rule for ingress (gateway.events) and subscription filters (gateway.policy.filters), so every
attribute an event can carry can be filtered on."""

from __future__ import annotations

import re
from typing import Final

MAX_NAME_LENGTH: Final = 64
ATTRIBUTE_NAME: Final = {
    "1.0": re.compile(rf"[a-z0-9]{{1,{MAX_NAME_LENGTH}}}"),
    "0.3": re.compile(rf"[a-z][a-z0-9]{{0,{MAX_NAME_LENGTH - 1}}}"),  # 0.3: begins with a letter
}
