"""Template-tree (span) diversity of a set of responses, as the EmPO code measures it beside NIDF.

The EmPO evaluation (`run_empathy_eval.py -m diversity`, justtherightsize/empo
src/emp_metrics/run_empathy_eval.py @ e1da723) runs Lee et al.'s measure (MichiganNLP/empathy_eval,
"A Comparative Multidimensional Analysis of Empathetic Systems"): `ngrams.evaluate` spanifies the
responses (src/emp_metrics/ngrams.py @ 0feb5f3, `SpanProcessor.spanify`), `gather_tree_stats`
prints the statistics of the resulting template tree (src/emp_metrics/gather_tree_stats.py @
e1da723, with `tree.py` of MichiganNLP/empathy_eval scripts/tree.py @ b9f0ce6). Procedure:

1. Tokenise each non-empty response with NLTK's `word_tokenize` (case kept).
2. Spanify, until no n-gram occurs twice: count every n-gram with n >= 2 over all responses
   (occurrences, not responses); weight = n * count (1 for a single occurrence); take the heaviest
   n-gram, the shortest among equal weights, then the one counted first (earliest response, then
   earliest position: the order of nltk's FreqDist); give it a hash token `span_DIGITS`; in every
   response holding it, replace its text in the space-joined tokens by the hash (plain string
   replacement, as the authors) and tokenise again. Spans nest: a later span may hold hash tokens.
3. The folded tree is the prefix tree (trie) of the resulting templates, the unfolded tree the trie
   of the tokenised responses; a node count includes the root.

Reported (gather_tree_stats.print_stats): unique templates, unique responses, nodes of the folded
tree, span nodes (distinct `span_` tokens reached from the templates, nested spans included),
children of the folded root, unique starting words (children of the unfolded root), compression
ratio (folded nodes / unfolded nodes: lower = more of the responses are shared templates), and the
most frequent spans. The counts are those of the authors' pool_size=1 path; their parallel
counting (`run_parallel`) gives the same counts and order.

Differences, each documented in docs/fidelity.md:
- sentence splitting inside `word_tokenize` uses NLTK's Punkt algorithm without the trained English
  parameters (the `punkt_tab` data is a download; this workflow runs offline): it differs from
  the trained model at abbreviations such as "Mr." (split there), not at ordinary sentence ends;
- hash tokens are `span_` + 16 digits of SHA-1 of the n-gram instead of Python's `hash()` (the
  authors' PYTHONHASHSEED is set inside the process, after start-up, so their digits are not
  reproducible); the procedure only needs distinct tokens;
- counting keeps only n-grams that can occur twice (an n-gram's prefix must occur twice too), so
  single occurrences are never stored; the chosen spans are the same.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from functools import lru_cache
from typing import Iterable, Sequence

SPAN_PREFIX = "span_"


@lru_cache(maxsize=1)
def _tokenizers():
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer(), NLTKWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """nltk.word_tokenize: Punkt sentences (untrained parameters, see the module docstring), then
    NLTK's Treebank word tokenizer on each."""
    sentences, words = _tokenizers()
    return [token for sentence in sentences.tokenize(str(text)) for token in words.tokenize(sentence)]


def span_hash(ngram: Sequence[str]) -> str:
    digest = int(hashlib.sha1("__".join(ngram).encode("utf-8")).hexdigest(), 16)
    return f"{SPAN_PREFIX}{digest % 10**16:016d}"


def _repeated_ngrams(data: Sequence[Sequence[str]]) -> dict[tuple, list[tuple[int, int]]]:
    """Every n-gram (n >= 2) occurring at least twice over `data` (overlapping occurrences
    count, as nltk's ngrams): {ngram: its (response, position) occurrences in reading order}. An
    n-gram occurring twice has a prefix that does, so longer n-grams are only grown from repeated
    shorter ones; each list stays sorted, as it is its prefix's list filtered."""
    repeated: dict[tuple, list[tuple[int, int]]] = {}
    occurrences: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for idx, tokens in enumerate(data):
        for pos in range(len(tokens) - 1):
            occurrences[(tokens[pos], tokens[pos + 1])].append((idx, pos))
    n = 2
    while occurrences:
        following: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        for gram, where in occurrences.items():
            if len(where) < 2:
                continue
            repeated[gram] = where
            for idx, pos in where:
                if pos + n < len(data[idx]):
                    following[gram + (data[idx][pos + n],)].append((idx, pos))
        occurrences = following
        n += 1
    return repeated


def spanify(responses: Sequence[Sequence[str]]) -> tuple[list[list[str]], dict[str, tuple[str, ...]]]:
    """Lee et al.'s SpanProcessor.spanify: (templates, {hash: span}). `responses` are token lists."""
    data = [list(tokens) for tokens in responses]
    hashmap: dict[str, tuple[str, ...]] = {}
    while True:
        repeated = _repeated_ngrams(data)
        if not repeated:
            return data, hashmap
        # weight n * count (count >= 2 here; single occurrences weigh 1 and never win), the shortest
        # n-gram among the heaviest, then FreqDist's order: the earliest first occurrence
        span = min(repeated, key=lambda gram: (-len(gram) * len(repeated[gram]), len(gram), repeated[gram][0]))
        token = span_hash(span)
        if token in hashmap:
            raise RuntimeError(f"template trees: span {' '.join(span)!r} was folded before ({token})")
        hashmap[token] = span
        text = " ".join(span)
        for idx in sorted({idx for idx, _ in repeated[span]}):
            data[idx] = word_tokenize(" ".join(data[idx]).replace(text, token))


class Trie:
    """tree.py's Tree: one node per distinct prefix, each with its count of templates."""

    def __init__(self, sequences: Iterable[Sequence[str]] = ()):
        self.root: dict = {}
        for sequence in sequences:
            node = self.root
            for token in sequence:
                node = node.setdefault(token, {})

    def num_nodes(self) -> int:
        """tree.num_nodes(root): every node, the root included."""
        count, stack = 0, [self.root]
        while stack:
            node = stack.pop()
            count += 1
            stack.extend(node.values())
        return count


def span_frequency(templates: Sequence[Sequence[str]], hashmap: dict[str, tuple[str, ...]]) -> Counter:
    """ngrams.span_frequency: occurrences of each `span_` token in the templates, counting the
    spans nested inside spans once per use."""
    frequency: Counter = Counter()

    def count(tokens):
        for token in tokens:
            frequency[token] += 1
            if token in hashmap:
                count(hashmap[token])

    for template in templates:
        count(template)
    return Counter({token: n for token, n in frequency.items() if token.startswith(SPAN_PREFIX)})


def unfold(token: str, hashmap: dict[str, tuple[str, ...]]) -> str:
    """A span's text with its nested spans resolved (SpanProcessor.resolve)."""
    if token not in hashmap:
        return token
    return " ".join(unfold(part, hashmap) for part in hashmap[token])


def template_tree_stats(texts: Sequence[str], top: int = 10) -> dict:
    """gather_tree_stats.print_stats over the non-empty responses (as `_load_data`)."""
    responses = [str(text) for text in texts if len(str(text)) != 0]
    tokenized = [word_tokenize(text) for text in responses]
    if not tokenized:
        return {"n_responses": 0}
    templates, hashmap = spanify(tokenized)
    folded, unfolded = Trie(templates), Trie(tokenized)
    frequency = span_frequency(templates, hashmap)
    return {
        "n_responses": len(responses),
        "unique_templates": len({tuple(template) for template in templates}),
        "unique_responses": len(set(responses)),
        "nodes": folded.num_nodes(),
        "span_nodes": len(frequency),
        "root_children": len(folded.root),
        "unique_starting_words": len(unfolded.root),
        "compression_ratio": folded.num_nodes() / unfolded.num_nodes(),
        "spans": len(hashmap),
        "top_spans": [[unfold(token, hashmap), n] for token, n in frequency.most_common(top)],
    }
