"""WebShop: the text shopping environment, re-implemented on the real catalogue.

Modules: :mod:`~environments.webshop.catalogue` (loading and cleaning products),
:mod:`~environments.webshop.goals` (goals, price caps, the split),
:mod:`~environments.webshop.search` (BM25: Lucene via pyserini, or bm25s),
:mod:`~environments.webshop.reward` (the purchase score),
:mod:`~environments.webshop.shop` (pages, actions, observation) and
:mod:`~environments.webshop.env` (the Gymnasium environment).
"""
