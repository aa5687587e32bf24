"""Template-tree (span) diversity as the EmPO code runs it (Lee et al.'s SpanProcessor and Tree;
justtherightsize/empo src/emp_metrics/ngrams.py @ 0feb5f3, gather_tree_stats.py @ e1da723):
hand-worked cases for spanify's choice (weight n*count, shortest, first counted), nested spans,
the trees' node counts and the statistics, plus the authors' plain string replacement. Cheap."""

from __future__ import annotations

import pytest

from empathy_workflow.empo import template_trees
from empathy_workflow.report.sections import empo_section


def test_word_tokenize_is_nltk_treebank_per_sentence():
    assert template_trees.word_tokenize("I'm sorry. Can't you \"see\" it?") == \
        ["I", "'m", "sorry", ".", "Ca", "n't", "you", "``", "see", "''", "it", "?"]
    token = template_trees.span_hash(("I", "am"))
    assert token.startswith("span_") and len(token) == 21 and template_trees.word_tokenize(f"{token} ok .") == [token, "ok", "."]


def test_hand_worked_statistics():
    """I am so sorry to hear that . / I am so sorry . / That is great ! / I am happy for you .
    Counts: "I am" 3 (weight 6), "I am so" 2 (6), "am so sorry" 2 (6), "I am so sorry" 2 (8): the
    4-gram is folded into H, then nothing occurs twice. Templates: [H to hear that .], [H .],
    [That is great !], [I am happy for you .]. Template tree: root + H + (to hear that .) + (.)
    + 4 + 6 = 17 nodes; word tree: root + I am so sorry (4) + to hear that . (4) + . + happy for
    you . (4) + That is great ! (4) = 18."""
    texts = ["I am so sorry to hear that.", "I am so sorry.", "That is great!", "I am happy for you.", ""]
    stats = template_trees.template_tree_stats(texts)
    assert stats == {"n_responses": 4, "unique_templates": 4, "unique_responses": 4, "nodes": 17, "span_nodes": 1,
                     "root_children": 3, "unique_starting_words": 2, "compression_ratio": pytest.approx(17 / 18),
                     "spans": 1, "top_spans": [["I am so sorry", 2]]}


def test_shortest_span_among_the_heaviest_then_nesting():
    """x y z / x y z / x y w: "x y" 3 (weight 6) ties "x y z" 2 (6): the shorter is folded first
    (H1); then "H1 z" occurs twice and becomes H2 = (H1, z). Templates [H2], [H2], [H1 w]: 4 nodes
    against 5 in the word tree; H1 is used 3 times (twice inside H2), H2 twice."""
    templates, hashmap = template_trees.spanify([["x", "y", "z"], ["x", "y", "z"], ["x", "y", "w"]])
    h1, h2 = template_trees.span_hash(("x", "y")), template_trees.span_hash((template_trees.span_hash(("x", "y")), "z"))
    assert hashmap == {h1: ("x", "y"), h2: (h1, "z")}
    assert templates == [[h2], [h2], [h1, "w"]]
    stats = template_trees.template_tree_stats(["x y z", "x y z", "x y w"])
    assert (stats["nodes"], stats["compression_ratio"], stats["span_nodes"], stats["unique_templates"],
            stats["unique_responses"], stats["root_children"], stats["unique_starting_words"]) == \
        (4, pytest.approx(4 / 5), 2, 2, 2, 2, 1)
    assert stats["top_spans"] == [["x y", 3], ["x y z", 2]]


@pytest.mark.parametrize("order, first", [((0, 1, 2), "a b"), ((1, 0, 2), "b c")])
def test_equal_weight_and_length_goes_to_the_first_counted(order, first):
    """a b / b c / a b c: "a b" and "b c" both occur twice (weight 4, length 2); nltk's FreqDist
    keeps first-insertion order, so the one met first (earlier response) is folded; the other is
    then left with one occurrence."""
    texts = ["a b", "b c", "a b c"]
    stats = template_trees.template_tree_stats([texts[i] for i in order])
    assert stats["spans"] == 1 and stats["top_spans"] == [[first, 2]]
    assert stats["nodes"] == 5 and stats["root_children"] == 2


def test_replacement_is_plain_string_replacement_as_the_authors():
    """ngrams.py replaces the span's text in the joined tokens: "so I am" (3 times, weight 9 against
    8 for "so I" x 4) also eats the start of "so I amaze" in the first response, and the token left,
    span_...aze, starts with "span_" and counts as a span node."""
    templates, hashmap = template_trees.spanify([template_trees.word_tokenize(t) for t in ["so I amaze so I am", "so I am", "so I am"]])
    token = template_trees.span_hash(("so", "I", "am"))
    assert hashmap == {token: ("so", "I", "am")} and templates == [[token + "aze", token], [token], [token]]
    stats = template_trees.template_tree_stats(["so I amaze so I am", "so I am", "so I am"])
    assert stats["spans"] == 1 and stats["span_nodes"] == 2


def test_report_prints_the_template_tree_table(tmp_path):
    import json

    paths = []
    for model, ratio in (("base", 0.95), ("sft", 0.9), ("dpo", 0.8)):
        path = tmp_path / "eval" / model / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"template_tree": {"compression_ratio": ratio, "unique_templates": 7,
                                                      "top_spans": [["I am so sorry", 3]]}}))
        paths.append(path)
    text = empo_section(paths, tmp_path / "none.json", [], [], [], tmp_path)
    assert "**template_tree**" in text and "compression_ratio" in text
    assert '- sft, most frequent spans: "I am so sorry" (3)' in text
    # a run against sft: only the ratio and the template count, with no better/worse direction
    assert "| dpo | template_tree.compression_ratio | 0.900 | 0.800 | -0.100 | changed |" in text
    assert "| dpo | template_tree.unique_templates | 7 | 7 | 0 | same |" in text
    assert "template_tree.n_responses |" not in text


def _brute_force_spanify(data):
    """The procedure without the pruning: every n-gram counted in a Counter (insertion order as
    nltk's FreqDist), stable sort by weight, the shortest of the heaviest."""
    from collections import Counter

    data = [list(tokens) for tokens in data]
    hashmap = {}
    while True:
        counts, holders = Counter(), {}
        longest = max(len(tokens) for tokens in data)
        for idx, tokens in enumerate(data):
            for n in range(2, longest + 1):
                grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
                for gram in grams:
                    holders.setdefault(gram, [])
                    if idx not in holders[gram]:
                        holders[gram].append(idx)
                counts.update(grams)
        if not counts or max(counts.values()) < 2:
            return data, hashmap
        weights = sorted(((gram, 1 if c == 1 else len(gram) * c) for gram, c in counts.items()), key=lambda x: x[1])
        best = [gram for gram, w in weights if w == weights[-1][1]]
        span = min(best, key=len)
        token = template_trees.span_hash(span)
        hashmap[token] = span
        for idx in holders[span]:
            data[idx] = template_trees.word_tokenize(" ".join(data[idx]).replace(" ".join(span), token))


def test_pruned_counting_matches_counting_every_ngram():
    from empo_fixtures import ed_conversations

    replies = [record["turns"][1]["text"] for record in ed_conversations()[:80] if len(record["turns"]) > 1]
    tokenized = [template_trees.word_tokenize(text) for text in replies]
    templates, hashmap = template_trees.spanify(tokenized)
    assert len(hashmap) > 10  # the replies share many n-grams
    assert (templates, hashmap) == _brute_force_spanify(tokenized)


def test_incremental_counting_matches_on_heavy_overlap():
    """Random texts over four words: overlapping repeats, nested spans, n-grams that stop
    repeating after a fold and start again after the next."""
    import random

    rng = random.Random(3)
    texts = [[rng.choice("abcd") for _ in range(rng.randint(3, 14))] for _ in range(30)]
    assert template_trees.spanify(texts) == _brute_force_spanify(texts)
