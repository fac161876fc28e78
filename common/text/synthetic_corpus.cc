#include "common/text/synthetic_corpus.h"

#include <cctype>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/text/tokenizer.h"

namespace hc {
namespace {

constexpr char kCorpus[] = R"TXT(
The morning was cold and bright. Anna opened the window, looked at the river, and decided
that today she would finally write the letter she had been thinking about for weeks.
"Good morning," said her brother from the kitchen. "Do you want coffee or tea?"
"Tea, please. And could you pass me the bread? I'm hungry."
They sat together at the small wooden table and talked about the weather, the garden,
the neighbours' new dog, and the long journey they were planning for the summer.

A conversation is a sequence of turns. Each turn adds a few new messages to the history,
and the model reads the whole history before it answers. If the state of the model at the
end of the previous turn is kept, the next turn only needs to process the new tokens.
This is the idea behind caching: remember what you have already computed, and reuse it
when the same question comes back. A cache that is missing makes the answer slower, but
it must never make the answer different.

Hybrid models mix two kinds of layers. Attention layers look back at every earlier token
and keep keys and values for each position. State space layers, such as Mamba, compress
the past into a fixed-size state that is updated one token at a time. The state does not
grow with the length of the conversation, which makes long chats cheaper to serve.

Recipe for a simple vegetable soup: chop two onions, three carrots, one potato and a
handful of green beans. Warm some olive oil in a large pot, add the onions and cook them
for five minutes until they are soft. Add the other vegetables, pour in one litre of
water, add salt and pepper, and let everything simmer for thirty minutes. Serve it hot
with fresh bread and a little cheese.

The train left the station at 7:45 and arrived in the city at 10:20, almost on time.
Tickets cost $25 for adults and $12 for children; students paid 50% of the full price.
In 2024 the line carried more than 3,500,000 passengers, an increase of 8.5 percent.

Questions people often ask:
1. How does the system know which worker holds my conversation?
2. What happens when a worker restarts?
3. Can two requests for the same conversation run at the same time?
The answers are short. The router keeps a ledger. A restarted worker recomputes the state
from the tokens in the ledger. Only one turn at a time is allowed for each conversation;
a second request is refused until the first one has finished.

Once upon a time there was a little fox who lived at the edge of a great forest. Every
evening the fox walked to the top of the hill and watched the lights of the village far
below. One night an old owl landed next to him and asked, "What are you looking for?"
"I don't know," said the fox. "Maybe a friend. Maybe a story." The owl laughed softly,
and then she told him the story of the moon, the wind and the seven silver rivers.

def add(a, b):
    return a + b

for i in range(10):
    print(i, add(i, i))

The weather report for tomorrow: cloudy in the north with light rain in the afternoon,
sunny and warm in the south, with temperatures between 18 and 24 degrees. The wind will
come from the west at about 15 kilometres per hour. On Sunday it will be colder again.

Science is the patient work of asking clear questions and testing the answers. A good
experiment changes one thing at a time, measures carefully, and is repeated by others.
Numbers must agree within the error of the measurement; otherwise something is wrong,
either with the theory or with the experiment, and both must be checked again.

She wrote: "Dear Thomas, thank you for your letter. We are all well here. The children
are growing fast, the apple trees are full of flowers, and the house is quiet in the
evenings. I hope you can visit us in June. With love, Anna."

Mathematics: two plus two is four; three times seven is twenty-one; the square root of
sixty-four is eight. A triangle has three sides and a square has four. Half of one
hundred is fifty, and a quarter of it is twenty-five.

User: Can you help me plan a trip to the mountains?
Assistant: Of course! How many days do you have, and do you prefer hiking or relaxing?
User: Four days. I like hiking, but not too hard.
Assistant: Then start with an easy walk around the lake on the first day, take the long
valley trail on the second, rest in the village on the third, and climb to the viewpoint
on the last morning before you travel home.
User: That sounds great, thank you!
Assistant: You're welcome. Have a wonderful time, and don't forget warm clothes.

Computers store text as numbers. A tokenizer splits the text into pieces, called tokens,
and gives each piece an id. Common words become a single token, while rare words are
split into smaller parts. Bytes that never appeared in training still have their own
tokens, so every string can be encoded and decoded again without losing anything.
)TXT";

constexpr const char* kNumberWords[] = {
    "zero",  "one",    "two",   "three",   "four",   "five",     "six",     "seven",
    "eight", "nine",   "ten",   "eleven",  "twelve", "thirteen", "twenty",  "thirty",
    "forty", "fifty",  "sixty", "seventy", "eighty", "ninety",   "hundred", "thousand",
    "first", "second", "third", "fourth",  "fifth",  "million",  "half",    "quarter"};

constexpr const char* kSuffixes[] = {"s", "ed", "ing", "er", "ly", "ness", "est", "ful"};

}  // namespace

std::string_view SyntheticCorpus() { return kCorpus; }

std::string AugmentedSyntheticCorpus(int rounds) {
  std::string out(kCorpus);
  std::set<std::string> words;  // ordered: deterministic output
  for (std::string_view piece : SplitGpt2(kCorpus)) {
    std::string w(piece);
    if (!w.empty() && w[0] == ' ') w.erase(0, 1);
    bool letters = !w.empty();
    for (char ch : w) letters &= std::isalpha(static_cast<unsigned char>(ch)) != 0;
    if (letters) {
      for (char& ch : w) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      words.insert(w);
    }
  }
  for (const char* n : kNumberWords) words.insert(n);
  for (int r = 0; r < rounds; ++r) {
    for (const std::string& w : words) {
      std::string cap = w, upper = w;
      cap[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(cap[0])));
      for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      const char* suffix = kSuffixes[(w.size() + r) % std::size(kSuffixes)];
      switch (r % 4) {
        case 0:
          absl::StrAppend(&out, " ", w, " ", cap, ". ");
          break;
        case 1:
          absl::StrAppend(&out, " ", w, suffix, " ", upper, ", ");
          break;
        case 2:
          absl::StrAppend(&out, cap, suffix, " (", w, ") ");
          break;
        default:
          absl::StrAppend(&out, " ", upper, suffix, "! ", w, "\n");
          break;
      }
    }
    for (int i = 0; i < 200; ++i) absl::StrAppend(&out, " ", i * (r + 7) + r, ",");
    out.push_back('\n');
  }
  return out;
}

}  // namespace hc
