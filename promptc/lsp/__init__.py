"""The language server (`promptc lsp`): analysis of open documents and the LSP features built on it.

`analysis.py` needs nothing beyond promptc itself; `server.py` binds it to pygls (the [lsp] extra).
"""
