"""The app's page files, in menu order (0 = Home): the one table the sidebar menu, the prev / next
links, the lessons and the tests read."""

# Page files, in curriculum order (0 = home).
PAGES = {
    0: ("app.py", "Home"),
    1: ("pages/1_Backbone.py", "1 · Backbone"),
    2: ("pages/2_Encoder.py", "2 · Encoder"),
    3: ("pages/3_Decoder.py", "3 · Decoder"),
    4: ("pages/4_Box_attention.py", "4 · Box attention"),
    5: ("pages/5_Concat_Res5.py", "5 · Concat with Res5"),
    6: ("pages/6_Upsampling.py", "6 · Upsampling"),
    7: ("pages/7_Merge.py", "7 · Merge"),
    8: ("pages/8_All_tensors.py", "All tensors"),
    9: ("pages/9_What_if.py", "What if"),
    10: ("pages/10_Questions.py", "Questions"),
}
QUESTIONS = 10                # the Questions page: the curriculum answered, and the check-yourself score
