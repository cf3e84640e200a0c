def describe_columns(df):
    return df.describe()


def scaled(x):
    return x * 2
