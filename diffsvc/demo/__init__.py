"""The offline demo: a generated two-singer corpus run through preprocess, train and infer."""
