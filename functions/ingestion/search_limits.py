"""What a search may ask for: the names a collection can have and the bounds of a query.
Apart from the search itself, so that the API's query models import no LanceDB."""

from __future__ import annotations

import re

COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_RESULTS = 50
MAX_QUERY_CHARS = 1000
