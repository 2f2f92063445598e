/**
 * The environment variables every bundled recipe and `childtune init`'s starter read, and what each holds:
 * an unset one is reported with this description, so the error says what to set it to.
 */
export const RECIPE_VARIABLES: Readonly<Record<string, string>> = {
  CHILDTUNE_MODEL:
    'a model: a Hugging Face model directory (config.json, model.safetensors, tokenizer files) or a hub id, e.g. google-bert/bert-base-uncased',
  CHILDTUNE_DATA:
    'the data root: the directory holding glue/<TASK>/ (e.g. glue/RTE/train.tsv), snli/, scitail/ and sick/',
};
