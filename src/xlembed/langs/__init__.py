"""Language coverage: which languages texts are in, which a model was trained on, and which model to pick.

- ``codes``: ISO 639-1/3 and BCP-47 codes to one canonical code per language (langcodes), names, varieties;
- ``detect``: the language mix of a sample of texts (fastText lid.176, py3langid where fastText is unsure);
- ``coverage``: a model's declared languages (catalogue, folder files) and the one summarised warning;
- ``recommend``: ranking of measured models x precisions for languages and limits (``xlembed recommend``).
"""
