"""To people and other tools: the HTML report, exports to Arize/Fiddler, the Phoenix explorer.
"""
