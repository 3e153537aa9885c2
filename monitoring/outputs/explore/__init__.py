"""``python -m monitoring explore --model M``: the captured window and the baseline in Arize
Phoenix's embedding explorer, running locally and offline (see :mod:`.cli`, :mod:`.phoenix_app`)."""
