"""Models on disk and the engines that run them: model packs, input normalisation, backends."""
