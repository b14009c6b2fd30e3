"""The shared emotional-support dialogue domain.

Data model, ESConv/ExTES loaders, support-strategy taxonomies, stratified splits, context
representations (raw, KeyPOS, NoStopwords, hybrid) and the chat formatting that training and
serving share. Light dependencies only: nothing here imports torch or llama_cpp.
"""
