-- The Vinyals et al. (2016) Omniglot split: 1028 meta-training, 172 meta-validation and 423 meta-test
-- characters, the default of torchmeta's Omniglot (use_vinyals_split=True). Data, not code: for each
-- part, the characters it holds, as runs {set, alphabet, first, last} meaning the folders
-- images_<set>/<alphabet>/character<first> .. character<last> (two-digit numbers, every one in between).
--
-- Source: tristandeleu/pytorch-meta, torchmeta/datasets/assets/omniglot/{train,val,test}.json at
-- commit 2dd22382a3af27b2c4137fd7ed2822a32597162f (2019-03-11, unchanged up to the release 1.8.0,
-- d55d89ebd47f340180267106bde3e4b723f23762), sha256
--   train.json 3432d95c10f2959c3894a2bebe63f70600b5c567a912d13200699b0634d7b191
--   val.json   4aca6cbef626e818dace533b4c46363830eaaa158f2d06e29beb3e9772258d5f
--   test.json  c3604a268c3e6bfb5f010e839dd986d0f149bfc81a93cf5de239a0543effea86
-- Each JSON file maps "background"/"evaluation" to alphabets to lists of character folder names;
-- every list there is a run of consecutive numbers, written here as its first and last. torchmeta
-- takes these lists from jakesnell/prototypical-networks, data/omniglot/splits/vinyals/{train,val,
-- test}.txt (commit 8fdc675e33f630999fe39c1465647a859ad69621; lines alphabet/character/rotNNN, 4
-- rotations per character): the same 1028 / 172 / 423 characters (checked when this file was made).
-- tests/lua/vinyals_split_spec.lua checks the sizes, that the parts are disjoint and cover Omniglot,
-- and (with the dataset) that every character named here exists.
return {
  train = { -- 1028 characters
    {"background", "Alphabet_of_the_Magi", 1, 20},
    {"background", "Anglo-Saxon_Futhorc", 1, 29},
    {"background", "Arcadian", 1, 26},
    {"background", "Asomtavruli_(Georgian)", 1, 40},
    {"background", "Balinese", 1, 24},
    {"background", "Blackfoot_(Canadian_Aboriginal_Syllabics)", 1, 14},
    {"background", "Braille", 1, 26},
    {"background", "Burmese_(Myanmar)", 1, 34},
    {"background", "Cyrillic", 1, 33},
    {"background", "Futurama", 1, 26},
    {"background", "Grantha", 1, 43},
    {"background", "Greek", 1, 24},
    {"background", "Gujarati", 1, 48},
    {"background", "Inuktitut_(Canadian_Aboriginal_Syllabics)", 1, 16},
    {"background", "Japanese_(hiragana)", 1, 52},
    {"background", "Japanese_(katakana)", 1, 47},
    {"background", "Korean", 1, 40},
    {"background", "Latin", 1, 26},
    {"background", "Malay_(Jawi_-_Arabic)", 1, 40},
    {"background", "N_Ko", 1, 33},
    {"background", "Ojibwe_(Canadian_Aboriginal_Syllabics)", 1, 14},
    {"background", "Sanskrit", 1, 42},
    {"background", "Syriac_(Estrangelo)", 1, 23},
    {"background", "Tagalog", 1, 17},
    {"background", "Tifinagh", 1, 55},
    {"evaluation", "Angelic", 1, 20},
    {"evaluation", "Atemayar_Qelisayer", 1, 26},
    {"evaluation", "Atlantean", 1, 26},
    {"evaluation", "Aurek-Besh", 1, 26},
    {"evaluation", "Avesta", 1, 26},
    {"evaluation", "Ge_ez", 1, 26},
    {"evaluation", "Glagolitic", 1, 45},
    {"evaluation", "Gurmukhi", 1, 41},
  },
  val = { -- 172 characters
    {"background", "Armenian", 1, 41},
    {"background", "Bengali", 1, 46},
    {"background", "Early_Aramaic", 1, 22},
    {"background", "Hebrew", 1, 22},
    {"background", "Mkhedruli_(Georgian)", 1, 41},
  },
  test = { -- 423 characters
    {"evaluation", "Gurmukhi", 42, 45},
    {"evaluation", "Kannada", 1, 41},
    {"evaluation", "Keble", 1, 26},
    {"evaluation", "Malayalam", 1, 47},
    {"evaluation", "Manipuri", 1, 40},
    {"evaluation", "Mongolian", 1, 30},
    {"evaluation", "Old_Church_Slavonic_(Cyrillic)", 1, 45},
    {"evaluation", "Oriya", 1, 46},
    {"evaluation", "Sylheti", 1, 28},
    {"evaluation", "Syriac_(Serto)", 1, 23},
    {"evaluation", "Tengwar", 1, 25},
    {"evaluation", "Tibetan", 1, 42},
    {"evaluation", "ULOG", 1, 26},
  },
}
