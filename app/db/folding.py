"""What "case-insensitive" means for search, on every database: full Unicode case folding.

A search for `q` finds a post when `fold(q)` is a substring of `fold(title)`. Python's
`str.casefold` (Unicode's full case folding, CaseFolding.txt with its C and F mappings)
is the one definition: "Straße" and "STRASSE" fold to "strasse", "ΣΊΣΥΦΟΣ" and
"σίσυφος" to "σίσυφοσ", "ﬁle" to "file". "İstanbul" folds to "i̇stanbul" (an i with
a combining dot above), so it does not find "istanbul", as Unicode has it.

Neither database can compute this itself (PostgreSQL's lower() and ILIKE follow the
server's locale; SQLite's fold ASCII only), so the application stores each title
folded in `posts.title_folded` when it writes the post, and searches that column.
"""


def fold(text: str) -> str:
    """`text` with full Unicode case folding applied (str.casefold)."""
    return text.casefold()
