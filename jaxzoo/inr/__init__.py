"""INR zoos: one SIREN per image (`siren`), its configs (`config`), images (`images`), training
(`train`), exports in the consumers' layouts (`export`) and the zoo card (`card`)."""
