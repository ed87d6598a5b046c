// Translation unit that owns torchfit's shared precompiled header.
