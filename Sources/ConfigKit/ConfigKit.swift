// ConfigKit: typed pg_doorman configuration model, codecs, validation, catalogue and emitters.
