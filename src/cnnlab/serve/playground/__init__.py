"""The playground: small networks on 2-D toy data, trained on the server while the browser
draws the decision boundary (TensorFlow Playground, Smilkov & Carter 2016, does the same in
the browser). `data2d.py` the data sets, `train2d.py` the model and its streamed training,
`api.py` the HTTP endpoints."""
