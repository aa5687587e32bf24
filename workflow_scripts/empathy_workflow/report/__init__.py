"""results/report/summary.md: every result of the workflow on one page, with its figures. The
workflow layer, above core and the papers' parts: `format` (numbers, tables, links), `sections`
(one per stage), `charts` (the two overview figures), `summary` (the page and the rule's entry)."""
