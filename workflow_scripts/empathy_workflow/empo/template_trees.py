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
- counting is incremental (only the responses that held the folded span are counted again) and
  keeps only n-grams that can occur twice; the chosen spans are the same (tests/test_template_trees.py
  checks this against counting every n-gram afresh, as the authors do).
"""

from __future__ import annotations

import hashlib
import heapq
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


class _NgramIndex:
    """Occurrences of the n-grams that matter for spanify, kept up to date as responses change.

    Held: every bigram, and every extension by one token of an n-gram that occurs at least twice
    (an n-gram occurring twice has a prefix that does), each with all its (response, position)
    occurrences, overlapping ones included (as nltk's ngrams). A heap orders the n-grams occurring
    at least twice by spanify's choice: weight n * count (highest), length (shortest), first
    occurrence (earliest: nltk's FreqDist keeps first-insertion order). After a fold only the
    responses that held the span are re-indexed, so the cost follows the changed text, not the
    corpus (the authors recount every n-gram of every response per fold)."""

    def __init__(self, data: list[list[str]]):
        self.data = data
        self.occ: dict[tuple, set[tuple[int, int]]] = {}
        self.children: dict[tuple, set[tuple]] = defaultdict(set)
        self.heap: list = []
        self.add(range(len(data)))

    def _push(self, gram: tuple) -> None:
        where = self.occ[gram]
        heapq.heappush(self.heap, ((-len(gram) * len(where), len(gram), min(where)), gram))

    def add(self, indices) -> None:
        """Index the current tokens of `indices` (level by level, so that an n-gram that reaches two
        occurrences here gets all its occurrences extended)."""
        new: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        for idx in indices:
            tokens = self.data[idx]
            for pos in range(len(tokens) - 1):
                new[(tokens[pos], tokens[pos + 1])].append((idx, pos))
        n = 2
        while new:
            following: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
            for gram, occurrences in new.items():
                where = self.occ.get(gram)
                if where is None:
                    where = self.occ[gram] = set()
                    if n > 2:
                        self.children[gram[:-1]].add(gram)
                repeated_before = len(where) >= 2
                where.update(occurrences)
                if len(where) < 2:
                    continue
                self._push(gram)
                for idx, pos in (occurrences if repeated_before else where):
                    if pos + n < len(self.data[idx]):
                        following[gram + (self.data[idx][pos + n],)].append((idx, pos))
            new = following
            n += 1

    def remove(self, indices) -> None:
        """Drop the occurrences in the current tokens of `indices`; n-grams left with fewer than two
        occurrences lose their extensions."""
        touched = set()
        for idx in indices:
            tokens = self.data[idx]
            for pos in range(len(tokens) - 1):
                gram = (tokens[pos], tokens[pos + 1])
                while gram in self.occ:
                    self.occ[gram].discard((idx, pos))
                    touched.add(gram)
                    end = pos + len(gram)
                    if end >= len(tokens):
                        break
                    gram = gram + (tokens[end],)
        for gram in sorted(touched, key=len):
            where = self.occ.get(gram)
            if where is None:
                continue  # dropped with a shorter prefix
            if len(where) >= 2:
                self._push(gram)
                continue
            self._drop_extensions(gram)
            if not where:
                del self.occ[gram]
                if len(gram) > 2:
                    self.children[gram[:-1]].discard(gram)

    def _drop_extensions(self, gram: tuple) -> None:
        stack = list(self.children.pop(gram, ()))
        while stack:
            child = stack.pop()
            self.occ.pop(child, None)
            stack.extend(self.children.pop(child, ()))

    def best(self) -> tuple | None:
        """The n-gram spanify folds next (None: nothing occurs twice)."""
        while self.heap:
            key, gram = self.heap[0]
            where = self.occ.get(gram)
            if where is not None and len(where) >= 2 and key == (-len(gram) * len(where), len(gram), min(where)):
                return gram
            heapq.heappop(self.heap)
        return None


def spanify(responses: Sequence[Sequence[str]]) -> tuple[list[list[str]], dict[str, tuple[str, ...]]]:
    """Lee et al.'s SpanProcessor.spanify: (templates, {hash: span}). `responses` are token lists."""
    data = [list(tokens) for tokens in responses]
    index = _NgramIndex(data)
    hashmap: dict[str, tuple[str, ...]] = {}
    while True:
        span = index.best()
        if span is None:
            return data, hashmap
        token = span_hash(span)
        if token in hashmap:
            raise RuntimeError(f"template trees: span {' '.join(span)!r} was folded before ({token})")
        hashmap[token] = span
        text = " ".join(span)
        holders = sorted({idx for idx, _ in index.occ[span]})
        index.remove(holders)
        for idx in holders:
            data[idx] = word_tokenize(" ".join(data[idx]).replace(text, token))
        index.add(holders)


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
