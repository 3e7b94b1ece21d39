"""Small adapter servers, one per peer, that ``xyra bench`` measures side by side.

Each module is started as ``python -m xyra.bench.servers.NAME PORT`` (the 0.2.7
adapter by file path, from its own venv) and implements the contract written in
``common``: echo at ``/``, pub/sub at ``/pubsub?topic=NAME``, on 127.0.0.1.
"""
