-- The queries people type, by class, for the search scenarios (issue 15). Each
-- search_<class>.lua asks one class; search_mix.lua draws a class by its weight.
-- Every query is URL-encoded here; the feed's `limit` is 10 unless the class says so.
local classes = {}

local function encode(text)
  return (text:gsub("[^%w%-%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local function word(bench)
  return bench.vocabulary[math.random(#bench.vocabulary)]
end

-- One common word: each of the 64 is in 5.8 to 6.2 % of the seeded titles (four words
-- a title), so the newest 500 posts hold about 30 matches and a first page is found there.
function classes.common(bench)
  return "limit=10&search=" .. encode(word(bench))
end

-- Three letters, the start of a common word, as typed before the rest. In the seed's
-- vocabulary most such starts belong to their word alone (about 6 % of the titles, like
-- the word; "lin" 12 %: linux and kotlin), so this class differs from the common one in
-- the pattern's trigrams (one), not in how many posts it finds.
function classes.fragment(bench)
  return "limit=10&search=" .. encode(word(bench):sub(1, 3))
end

-- Two or three words as typed together: each common, the phrase rare (titles are four
-- random words), so its matches are spread over the whole feed, mostly old.
function classes.phrase(bench)
  local words = {word(bench), word(bench)}
  if math.random() < 0.3 then words[#words + 1] = word(bench) end
  return "limit=10&search=" .. encode(table.concat(words, " "))
end

-- A word that is in no title: a misspelling, random letters, a word of another topic.
local absent = {"pythn", "dokcer", "kafak", "qzxvw", "xylophone", "zzzz", "grapefruit", "mangoes", "rustacean"}
function classes.absent(bench)
  if math.random() < 0.5 then
    return "limit=10&search=" .. encode(absent[math.random(#absent)])
  end
  local letters = {}
  for i = 1, math.random(4, 9) do letters[i] = string.char(math.random(97, 122)) end
  return "limit=10&search=" .. encode(table.concat(letters))
end

-- Up to the 100-character limit: a whole title pasted, or the same word again and again.
function classes.long(bench)
  local parts = {}
  while #table.concat(parts, " ") < 80 do parts[#parts + 1] = word(bench) end
  return "limit=10&search=" .. encode(table.concat(parts, " "):sub(1, 100))
end

-- The LIKE metacharacters, which must be taken literally.
local special = {"%", "_", "\\", "100%", "a_b", "c:\\", "%%", "__init__", "50% off"}
function classes.special(bench)
  return "limit=10&search=" .. encode(special[math.random(#special)])
end

-- A common word, paged: deep with skip, or with a cursor, or 100 at once.
function classes.paged(bench)
  local r = math.random()
  if r < 0.4 then
    return "limit=10&skip=" .. math.random(10, 400) .. "&search=" .. encode(word(bench))
  elseif r < 0.7 then
    return "limit=10&before_id=" .. math.random(1, bench.posts) .. "&search=" .. encode(word(bench))
  end
  return "limit=100&search=" .. encode(word(bench))
end

-- The mix: what a search box sees, most of it single words (see bench/README.md).
classes.weights = {
  {"common", 35}, {"fragment", 15}, {"phrase", 15}, {"absent", 15},
  {"long", 5}, {"special", 5}, {"paged", 10},
}

function classes.mix(bench)
  local total = 0
  for _, entry in ipairs(classes.weights) do total = total + entry[2] end
  local pick = math.random() * total
  for _, entry in ipairs(classes.weights) do
    pick = pick - entry[2]
    if pick <= 0 then return classes[entry[1]](bench) end
  end
  return classes.common(bench)
end

return classes
