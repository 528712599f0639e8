"""Config validation, resolvers and recipes: what a composed config may hold and what it means."""
