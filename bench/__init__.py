"""Drivers layer: everything that drives the platform from outside -- benchmarks, the soak, the load
tester (loadtest/, locustfile), the offline demo (demo/) and the deploy rehearsal (rehearse).
May import every other layer; nothing imports it.
"""
