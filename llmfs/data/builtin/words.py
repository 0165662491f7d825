"""The vocabulary of the built-in stories and tasks: characters, places, objects, feelings, activities.

Plain tuples, so the generators stay readable and the word lists can be extended in one place.
"""

from __future__ import annotations

GIRLS = ("Lily", "Mia", "Sara", "Emma", "Zoe", "Anna", "Lucy", "Ella", "Ruby", "Maya", "Nora", "Ivy", "Rosa",
         "Amy", "Kate", "Lena", "Hana", "Tara", "Jade", "Eva", "Leah", "Nina", "Olive", "Grace", "Chloe", "Molly",
         "Daisy", "Alice", "Julia", "Sofia", "Amara", "Bea", "Cleo", "Dina", "Elsa", "Fern", "Gemma", "Hazel",
         "Iris", "June", "Kira", "Luna", "Mara", "Nell", "Opal", "Pia", "Rita", "Suki", "Tess", "Uma", "Vera",
         "Wren", "Yara", "Zara", "Ada", "Lola")
BOYS = ("Tom", "Ben", "Sam", "Max", "Leo", "Jack", "Finn", "Noah", "Owen", "Eli", "Jake", "Luke", "Omar",
        "Ravi", "Kai", "Theo", "Adam", "Milo", "Hugo", "Ivan", "Paul", "Dan", "Tim", "Oscar", "Felix", "Liam",
        "Ezra", "Jonah", "Arlo", "Nico", "Abe", "Bo", "Carl", "Dev", "Emil", "Femi", "Gus", "Hank", "Igor",
        "Joel", "Ken", "Lars", "Marco", "Ned", "Otto", "Pete", "Quinn", "Rob", "Seth", "Toby", "Umar", "Vic",
        "Walt", "Yusuf", "Zeke", "Alec")
# (kind, adjective choices, names); animals are "he" or "she" by name, as in picture books.
ANIMALS = (("dog", ("little", "happy", "fluffy", "brown"), ("Spot", "Buddy", "Rex", "Bella", "Coco")),
           ("cat", ("small", "grey", "sleepy", "curious"), ("Whiskers", "Tiger", "Luna", "Mittens", "Sooty")),
           ("bunny", ("white", "tiny", "soft", "quick"), ("Hop", "Snow", "Clover", "Pip", "Fluff")),
           ("bird", ("blue", "little", "bright", "chirpy"), ("Tweet", "Sky", "Sunny", "Kiwi", "Feather")),
           ("bear", ("big", "kind", "brown", "gentle"), ("Bruno", "Honey", "Teddy", "Bramble", "Barney")),
           ("mouse", ("tiny", "shy", "brave", "quiet"), ("Squeak", "Nibbles", "Pepper", "Button", "Crumb")),
           ("duck", ("yellow", "silly", "little", "noisy"), ("Quack", "Puddle", "Waddles", "Dot", "Splash")),
           ("fox", ("red", "clever", "quick", "young"), ("Rusty", "Amber", "Flick", "Ginger", "Scout")))
SHE_ANIMAL_NAMES = {"Bella", "Luna", "Mittens", "Clover", "Honey", "Amber", "Ginger", "Kiwi", "Dot", "Pepper",
                    "Snow", "Coco"}
ADULTS = (("Mom", "she"), ("Dad", "he"), ("Grandma", "she"), ("Grandpa", "he"), ("the teacher", "she"),
          ("Aunt May", "she"), ("Uncle Joe", "he"))
# (place, where things hide there, what you see there)
PLACES = (("the park", "under a bench", "tall trees and a big slide"),
          ("the beach", "behind a big rock", "shells and little crabs"),
          ("the forest", "under a pile of leaves", "mushrooms and tall pine trees"),
          ("the garden", "behind the flower pots", "red roses and busy bees"),
          ("the school yard", "near the old fence", "a swing and a sandbox"),
          ("the farm", "inside the hay barn", "cows, pigs and a noisy rooster"),
          ("the lake", "in the tall grass", "ducks and a little wooden boat"),
          ("the zoo", "next to the gate", "a giraffe and two sleepy lions"),
          ("the market", "under a fruit stand", "apples, bread and bright flowers"),
          ("the library", "between two big books", "shelves full of stories"),
          ("the hill", "behind a round stone", "the whole town far below"),
          ("the playground", "under the slide", "kids running and laughing"),
          ("the river", "among the smooth stones", "fish jumping in the water"),
          ("the backyard", "under the old tree", "a bird house and a small pond"),
          ("the meadow", "in the long grass", "butterflies and yellow flowers"),
          ("Grandma's house", "behind the big sofa", "a cozy kitchen and a ticking clock"))
# (object, its colour or kind) - short name used after the first mention
OBJECTS = (("ball", "red"), ("kite", "green"), ("teddy bear", "soft"), ("hat", "blue"), ("toy car", "shiny"),
           ("doll", "little"), ("book", "old"), ("crayon box", "new"), ("scarf", "warm"), ("boat", "wooden"),
           ("shell", "pink"), ("balloon", "yellow"), ("drum", "small"), ("kite string", "long"),
           ("robot", "silver"), ("puzzle", "big"), ("shovel", "orange"), ("whistle", "shiny"),
           ("backpack", "purple"), ("jar of marbles", "glass"), ("paper crown", "gold"), ("train", "toy"),
           ("blanket", "cozy"), ("flute", "little"), ("map", "folded"), ("key", "tiny"), ("rock", "smooth"),
           ("cup", "striped"), ("sock", "odd"), ("flag", "bright"))
GAMES = ("tag", "hide and seek", "catch", "jump rope", "a game of pretend", "leapfrog", "a race to the tree",
         "hopscotch", "a treasure hunt", "follow the leader")
FOODS = ("cookies", "a big red apple", "warm soup", "pancakes", "a slice of cake", "strawberries", "a sandwich",
         "hot cocoa", "ice cream", "a bowl of cherries", "banana bread", "lemonade")
FEELINGS_GOOD = ("happy", "glad", "proud", "excited", "cheerful", "calm", "thankful")
FEELINGS_BAD = ("sad", "worried", "scared", "upset", "lonely", "grumpy", "nervous")
# (what to learn, what success looks like, what failure looks like)
SKILLS = (("ride a bike", "rode the bike all the way down the street", "wobbled and fell on the grass"),
          ("swim", "swam across the pool", "sank and splashed"),
          ("bake a cake", "baked a cake that smelled sweet", "made a big mess of flour"),
          ("climb the big tree", "climbed up to the highest branch", "slipped on the first branch"),
          ("fly a kite", "flew the kite high over the houses", "watched the kite crash down"),
          ("tie shoelaces", "tied the laces in a neat bow", "made a big knot"),
          ("whistle", "whistled a happy tune", "only made a puff of air"),
          ("read a long book", "read the whole book to the last page", "got stuck on a hard word"),
          ("skate", "skated in a big circle", "slid and sat down hard"),
          ("draw a horse", "drew a fine horse with a long tail", "drew something like a potato"))
FEARS = (("the dark", "the light was off", "the dark was just the room without light"),
         ("thunder", "the sky went boom", "thunder is only a loud noise far away"),
         ("the big dog next door", "the dog barked", "the dog only wanted to play"),
         ("deep water", "the waves came close", "the water was only up to the knees"),
         ("the tall slide", "looked down from the top", "the slide was fast but safe"),
         ("the new school", "saw all the new faces", "new faces can become new friends"),
         ("a spider", "saw a spider on the wall", "the spider was small and shy"),
         ("the doctor", "sat in the big chair", "the doctor was gentle and kind"))
HELP_NEEDS = (("a bird with a hurt wing", "gently made it a warm nest in a box", "the bird could fly again"),
              ("an old man who dropped his apples", "picked up every apple", "the man smiled and gave a thank you"),
              ("a kitten stuck in a tree", "called a grown-up with a ladder", "the kitten was safe on the ground"),
              ("a little boy who was lost", "helped him find his mom", "the boy hugged his mom tight"),
              ("a turtle on its back", "carefully turned it over", "the turtle walked slowly away"),
              ("a neighbor with heavy bags", "carried one bag to the door", "the neighbor gave a big smile"),
              ("a baby duck far from its mother", "walked it back to the pond", "the ducks swam off together"),
              ("a friend who spilled paint", "helped clean the table", "the table was clean again"))
WEATHER = (("rainy", "rain tapped on the window"), ("snowy", "snow covered the street"),
           ("windy", "the wind shook the trees"), ("foggy", "fog hid the houses"),
           ("stormy", "clouds rolled over the town"), ("cold", "frost sparkled on the grass"))
GIFTS = (("a card with a big heart", "drew"), ("a clay cup", "shaped"), ("a paper flower", "folded"),
         ("a bead bracelet", "strung"), ("a little cake", "baked"), ("a painted stone", "painted"),
         ("a song", "practised"), ("a picture of the family", "drew"))
BREAKABLES = ("vase", "cup", "plate", "lamp", "picture frame", "cookie jar", "bowl", "clock")
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "white", "black", "brown")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve")
LIST_WORDS = ("apple", "river", "cloud", "tiger", "pencil", "garden", "rocket", "window", "banana", "castle",
              "dragon", "lemon", "mountain", "piano", "candle", "turtle", "forest", "button", "island", "violin",
              "pepper", "blanket", "compass", "lantern", "meadow", "ocean", "planet", "shadow", "thunder", "wagon")
