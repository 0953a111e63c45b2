"""Keeping a family up to date: what is outdated (:mod:`.outdated`), re-locking and moving base versions
(:mod:`.update`, :mod:`.versions`), what a build would change (:mod:`.plan`), and swapping the base
under a pushed image (:mod:`.rebase`)."""
