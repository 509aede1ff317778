"""The words generated profiles and simulated leads are drawn from."""

from __future__ import annotations

FIRST_NAMES = ("Ada", "Grace", "Alan", "Katherine", "Linus", "Barbara", "Edsger", "Margaret",
               "Donald", "Frances", "Ken", "Radia", "John", "Hedy", "Tim", "Sophie", "Niklaus",
               "Shafi", "Leslie", "Marie")

LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Liskov", "Dijkstra",
              "Hamilton", "Knuth", "Allen", "Thompson", "Perlman", "McCarthy", "Lamarr", "Lee",
              "Wilson", "Wirth", "Goldwasser", "Lamport", "Curie")

COMPANIES = ("Analytical Engines", "Compilers Inc", "Bletchley Labs", "Orbital Math",
             "Kernel Works", "Abstract Data", "Shortest Path", "Apollo Guidance",
             "Literate Programs", "Parallel Forms", "Pipes & Filters", "Spanning Tree")

TITLES = ("Founder", "CEO", "CTO", "VP Engineering", "Head of Growth", "Sales Director",
          "Product Manager", "Staff Engineer")

CITIES = ("London", "Paris", "Berlin", "New York", "Chicago", "Lisbon", "Amsterdam", "Madrid")

REPLIES = ("Thanks for reaching out!", "Sounds interesting, tell me more.",
           "Not right now, maybe next quarter.", "Happy to chat, when works for you?",
           "Please remove me from your list.")

OPENERS = ("Hi, I saw your profile and wanted to say hello.",
           "Hello! Are you hiring at the moment?", "Hey, quick question about your product.")
